"""The API's error body, as the schema at /api/v1/schema/ documents it:
{"error": {"code", "message", "fields"?}}."""

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.utils.translation import gettext as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from panel.servers.actions import ActionError, Conflict, Forbidden, Unprocessable

CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "throttled",
}


def error_response(status_code: int, message: str, code: str | None = None, fields=None) -> Response:
    body = {"code": code or CODES.get(status_code, "error"), "message": message}
    if fields:
        body["fields"] = fields
    return Response({"error": body}, status=status_code)


def _flatten(detail):
    if isinstance(detail, dict):
        return {key: _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [str(item) if not isinstance(item, dict | list) else _flatten(item) for item in detail]
    return str(detail)


# DRF's own codes; any other code an exception carries (read_only_token, totp_required, ...) is passed on.
GENERIC_CODES = {
    "error",
    "invalid",
    "parse_error",
    "authentication_failed",
    "not_authenticated",
    "permission_denied",
    "not_found",
    "method_not_allowed",
    "not_acceptable",
    "unsupported_media_type",
    "throttled",
}


def _code(exc: exceptions.APIException, status_code: int) -> str:
    detail_code = getattr(exc.detail, "code", None)
    for candidate in (detail_code, getattr(exc, "default_code", None)):
        if isinstance(candidate, str) and candidate not in GENERIC_CODES:
            return candidate
    return CODES.get(status_code, "error")


def exception_handler(exc, context):
    if isinstance(exc, ActionError):
        if isinstance(exc, Conflict):
            status_code = 409
        elif isinstance(exc, Unprocessable):
            status_code = 422
        elif isinstance(exc, Forbidden):
            status_code = 403
        else:
            status_code = 400
        return error_response(status_code, exc.message, exc.code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            detail=exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    if isinstance(exc, Http404):
        return error_response(404, _("Not found."))
    if isinstance(exc, PermissionDenied):
        return error_response(403, _("You do not have permission to do this."))
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            fields = _flatten(detail)
            non_field = fields.pop("non_field_errors", None)
            message = "; ".join(non_field) if non_field else _("Some fields are invalid.")
            first = next(iter(fields.items()), None)
            if not non_field and first:
                value = first[1][0] if isinstance(first[1], list) and first[1] else first[1]
                message = f"{first[0]}: {value}"
            return error_response(400, message, "invalid", fields or None)
        messages = _flatten(detail)
        return error_response(400, "; ".join(messages) if isinstance(messages, list) else str(messages))
    if isinstance(exc, exceptions.APIException):
        detail = exc.detail
        message = str(detail) if not isinstance(detail, dict | list) else str(_flatten(detail))
        code = _code(exc, response.status_code)
        new = error_response(response.status_code, message, code)
        for header in ("WWW-Authenticate", "Retry-After", "Allow"):
            if header in response:
                new[header] = response[header]
        return new
    return response


def not_found_view(request, exception=None):
    """Unknown paths under /api/v1/ answer with the API's error body, not an HTML page."""
    return JsonResponse(
        {"error": {"code": "not_found", "message": _("Not found.")}}, status=status.HTTP_404_NOT_FOUND
    )
