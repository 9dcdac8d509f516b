"""The browser console of a server: single-use console tokens (`sessions`), the RFB handshakes the proxy
speaks on both sides (`rfb`) and the websocket proxy process (`proxy`, run by `manage.py console_proxy`)."""
