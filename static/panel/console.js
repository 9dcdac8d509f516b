/* The server page's consoles: the graphical console (noVNC) and the serial console (xterm.js), in the
   page or in a window of their own. An ES module; noVNC and xterm.js are imported from the panel's own
   static files (node_modules, pinned by package-lock.json) when Connect is pressed.

   The page gives everything on the [data-console] element: the console type, the URL that mints a
   single-use console token (POST, CSRF token in data-csrf-token), the window's URL, the libraries' URLs
   and the texts to show (data-text-*, translated by the template). Each Connect asks for a fresh token and
   opens a websocket to the console proxy with it; the proxy speaks RFB (graphical) or raw bytes (serial). */

const SHIFT = 0xffe1;
const RETURN = 0xff0d;
const TAB = 0xff09;

// Characters typed with a US keyboard (what QEMU assumes): the key's code, and whether Shift is held.
const US_KEYS = (() => {
  const keys = new Map();
  const row = (plain, shifted, codes) => {
    [...plain].forEach((ch, i) => keys.set(ch, [codes[i], false]));
    [...shifted].forEach((ch, i) => keys.set(ch, [codes[i], true]));
  };
  for (const letter of "abcdefghijklmnopqrstuvwxyz") {
    keys.set(letter, ["Key" + letter.toUpperCase(), false]);
    keys.set(letter.toUpperCase(), ["Key" + letter.toUpperCase(), true]);
  }
  const digits = ["Digit1", "Digit2", "Digit3", "Digit4", "Digit5", "Digit6", "Digit7", "Digit8", "Digit9", "Digit0"];
  row("1234567890-=", "!@#$%^&*()_+", [...digits, "Minus", "Equal"]);
  row("[]\\;',./`", '{}|:"<>?~', [
    "BracketLeft", "BracketRight", "Backslash", "Semicolon", "Quote", "Comma", "Period", "Slash", "Backquote",
  ]);
  keys.set(" ", ["Space", false]);
  return keys;
})();

// The X keysym of a character: Latin-1 is its own code point, the rest of Unicode is 0x01000000 + it.
function keysymOf(ch) {
  if (ch === "\n") return RETURN;
  if (ch === "\t") return TAB;
  const point = ch.codePointAt(0);
  if ((point >= 0x20 && point <= 0x7e) || (point >= 0xa0 && point <= 0xff)) return point;
  return 0x01000000 + point;
}

class Console {
  constructor(root) {
    this.root = root;
    this.options = root.dataset;
    this.type = this.options.type;
    this.screen = root.querySelector("[data-console-screen]");
    this.placeholder = root.querySelector("[data-console-placeholder]");
    this.status = root.querySelector("[data-console-status]");
    this.buttons = {};
    root.querySelectorAll("[data-console-action]").forEach((button) => {
      this.buttons[button.dataset.consoleAction] = button;
    });
    this.pasteText = root.querySelector("[data-console-paste]");
    this.connection = null; // the open console: {socket, send(text), ctrlAltDel(), close()}
    this.attempt = 0;

    this.on("connect", () => this.connect());
    this.on("disconnect", () => this.disconnect(this.text("disconnected")));
    this.on("ctrl-alt-del", () => this.connection && this.connection.ctrlAltDel && this.connection.ctrlAltDel());
    this.on("paste", () => this.paste());
    this.on("fullscreen", () => this.fullscreen());
    this.on("popout", () => this.popOut());
    if (this.buttons.fullscreen && !document.fullscreenEnabled) this.buttons.fullscreen.hidden = true;
    this.show("idle", this.text("notConnected"));
    if ("autoconnect" in this.options) this.connect();
  }

  on(action, handler) {
    const button = this.buttons[action];
    if (button) button.addEventListener("click", (event) => {
      event.preventDefault();
      handler();
    });
  }

  text(name, values) {
    let text = this.options["text" + name[0].toUpperCase() + name.slice(1)] || "";
    for (const [key, value] of Object.entries(values || {})) text = text.replace(`%(${key})s`, value);
    return text;
  }

  // The state the controls show: idle (never connected), connecting, connected, ended or error.
  show(state, message) {
    this.state = state;
    this.root.dataset.state = state;
    this.status.textContent = message;
    this.status.classList.toggle("is-error", state === "error");
    // The message shows in the middle of the empty screen (and in the toolbar for screen readers only); once
    // there is something on the screen (a connected console, the serial console's text), in the toolbar.
    const empty = state !== "connected" && !this.terminal;
    this.placeholder.hidden = !empty;
    this.placeholder.querySelector("[data-console-placeholder-text]").textContent = message;
    this.status.classList.toggle("visually-hidden", empty);
    const live = state === "connected";
    const { connect, disconnect } = this.buttons;
    if (connect) {
      connect.hidden = live || state === "connecting";
      connect.querySelector("[data-label]").textContent =
        state === "idle" ? this.text("connect") : this.text("reconnect");
    }
    if (disconnect) disconnect.hidden = !(live || state === "connecting");
    for (const name of ["ctrl-alt-del", "paste", "fullscreen"]) {
      if (this.buttons[name]) this.buttons[name].disabled = !live;
    }
  }

  async connect() {
    this.close();
    const attempt = ++this.attempt;
    this.show("connecting", this.text("connecting"));
    let grant;
    try {
      grant = await this.token();
    } catch (error) {
      if (attempt === this.attempt) this.show("error", error.message || this.text("failed"));
      return;
    }
    if (attempt !== this.attempt) return;
    try {
      this.connection = this.type === "vnc" ? await this.openVnc(grant.url, attempt) : await this.openSerial(grant.url, attempt);
    } catch (error) {
      if (attempt === this.attempt) this.show("error", this.text("failed"));
      console.error(error);
    }
  }

  async token() {
    let response;
    try {
      response = await fetch(this.options.tokenUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRFToken": this.options.csrfToken, Accept: "application/json" },
      });
    } catch (error) {
      throw new Error(this.text("failed"));
    }
    let body = null;
    if ((response.headers.get("Content-Type") || "").startsWith("application/json")) body = await response.json();
    if (response.ok && body && body.url) return body;
    if (body && body.detail) throw new Error(body.detail);
    if (response.redirected || response.status === 401 || response.status === 403) throw new Error(this.text("loggedOut"));
    throw new Error(this.text("failed"));
  }

  // The websocket ended (or never opened): say why. `closed` is its close event, when it had one.
  ended(attempt, closed, ownDoing) {
    if (attempt !== this.attempt) return;
    this.connection = null;
    if (ownDoing) return;
    const worded = closed && this.root.getAttribute(`data-text-closed-${closed.code}`);
    if (worded) {
      this.show(closed.code === 4004 ? "ended" : "error", worded);
    } else if (closed && closed.reason) {
      this.show(closed.code === 1000 ? "ended" : "error", this.text("closed", { reason: closed.reason }));
    } else if (closed && closed.wasClean) {
      this.show("ended", this.text("disconnected"));
    } else {
      this.show("error", this.text("unreachable"));
    }
  }

  socket(url) {
    const socket = new WebSocket(url, ["binary"]);
    socket.binaryType = "arraybuffer";
    return socket;
  }

  async openVnc(url, attempt) {
    const { default: RFB } = await import(this.options.rfbSrc);
    if (attempt !== this.attempt) return null;
    const socket = this.socket(url);
    let closed = null;
    let ownDoing = false;
    socket.addEventListener("close", (event) => (closed = event));
    let rfb;
    try {
      rfb = new RFB(this.screen, socket, { shared: true });
    } catch (error) {
      socket.close();
      throw error;
    }
    rfb.scaleViewport = true;
    rfb.resizeSession = false;
    rfb.background = "#000";
    rfb.addEventListener("connect", () => {
      if (attempt !== this.attempt) return;
      this.show("connected", this.text("connected"));
      rfb.focus();
    });
    rfb.addEventListener("disconnect", () => {
      // The websocket's close event carries the proxy's reason; it may come a moment after noVNC's.
      window.setTimeout(() => this.ended(attempt, closed, ownDoing), closed ? 0 : 300);
    });
    rfb.addEventListener("securityfailure", (event) => {
      closed = closed || { code: 4000, reason: event.detail.reason || "", wasClean: false };
    });
    return {
      socket,
      rfb,
      ctrlAltDel: () => rfb.sendCtrlAltDel(),
      send: (text) => {
        for (const ch of text.replace(/\r\n?/g, "\n")) {
          const [code, shifted] = US_KEYS.get(ch) || [ch === "\n" ? "Enter" : ch === "\t" ? "Tab" : null, false];
          if (shifted) rfb.sendKey(SHIFT, "ShiftLeft", true);
          rfb.sendKey(keysymOf(ch), code, true);
          rfb.sendKey(keysymOf(ch), code, false);
          if (shifted) rfb.sendKey(SHIFT, "ShiftLeft", false);
        }
        rfb.focus();
      },
      close: () => {
        ownDoing = true;
        rfb.disconnect();
      },
    };
  }

  async openSerial(url, attempt) {
    if (!this.terminal) {
      const [{ Terminal }, { FitAddon }] = await Promise.all([
        import(this.options.xtermSrc),
        import(this.options.fitSrc),
      ]);
      if (attempt !== this.attempt) return null;
      const narrow = window.matchMedia("(max-width: 480px)").matches;
      this.terminal = new Terminal({
        cursorBlink: true,
        fontFamily: getComputedStyle(document.documentElement).getPropertyValue("--mono") || "monospace",
        fontSize: narrow ? 11 : 14,
        scrollback: 5000,
        theme: { background: "#0b1324", foreground: "#e2e8f0", cursor: "#e2e8f0" },
      });
      const fit = new FitAddon();
      this.terminal.loadAddon(fit);
      this.terminal.open(this.screen);
      const refit = () => {
        try {
          fit.fit();
        } catch (error) {
          // Hidden or not laid out yet: fitted at the next resize.
        }
      };
      refit();
      new ResizeObserver(refit).observe(this.screen);
      const encoder = new TextEncoder();
      this.terminal.onData((data) => this.connection && this.connection.sendBytes(encoder.encode(data)));
      this.terminal.onBinary((data) => {
        if (this.connection) this.connection.sendBytes(Uint8Array.from(data, (ch) => ch.charCodeAt(0) & 0xff));
      });
    }
    const terminal = this.terminal;
    const socket = this.socket(url);
    let ownDoing = false;
    socket.addEventListener("open", () => {
      if (attempt !== this.attempt) return;
      this.show("connected", this.text("connected"));
      terminal.focus();
    });
    socket.addEventListener("message", (event) => {
      terminal.write(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
    });
    socket.addEventListener("close", (event) => this.ended(attempt, event, ownDoing));
    const encoder = new TextEncoder();
    const sendBytes = (bytes) => {
      if (socket.readyState === WebSocket.OPEN) socket.send(bytes);
    };
    return {
      socket,
      sendBytes,
      // A terminal sends Enter as a carriage return.
      send: (text) => {
        sendBytes(encoder.encode(text.replace(/\r?\n/g, "\r")));
        terminal.focus();
      },
      close: () => {
        ownDoing = true;
        socket.close(1000);
      },
    };
  }

  close() {
    if (this.connection) {
      this.connection.close();
      this.connection = null;
    }
  }

  disconnect(message) {
    this.attempt++;
    this.close();
    this.show("ended", message);
  }

  paste() {
    if (!this.connection || !this.pasteText.value) return;
    this.connection.send(this.pasteText.value);
    this.pasteText.value = "";
  }

  fullscreen() {
    if (document.fullscreenElement) {
      document.exitFullscreen();
    } else {
      this.screen.requestFullscreen().then(() => this.screen.focus(), () => {});
    }
  }

  popOut() {
    const name = this.options.windowName;
    const opened = window.open(this.options.windowUrl, name, "popup,width=1060,height=860");
    if (!opened) {
      this.show(this.state === "connected" ? "connected" : "error", this.text("popupBlocked"));
      return;
    }
    // One console at a time: the window opens its own.
    this.disconnect(this.text("poppedOut"));
  }
}

document.querySelectorAll("[data-console]").forEach((root) => {
  root.console = new Console(root);
});
