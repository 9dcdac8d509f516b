"""API v1 admin/ip-pools/: staff list and read IP pools, admins create and change them. Thin: the pools are
made and changed by panel.infrastructure.pools (hypervisor.ipam validates the networks)."""

from __future__ import annotations

import ipaddress

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response

from hypervisor import ipam
from hypervisor.models import IPPool, Region
from panel.api.errors import error_response
from panel.api.permissions import IsAdminOrReadOnlyStaff
from panel.infrastructure import pools

MAX_NAMESERVERS = 16
MAX_EXCLUDED = 1000


# Serializers.


class IPPoolSerializer(serializers.ModelSerializer):
    """A pool with its usage: `size` rows (addresses, or routed /64s), `used` by servers, `free` to hand out
    now (not cooling down after a release, not reserved by the excluded list)."""

    region = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    nameservers = serializers.ListField(child=serializers.CharField(), read_only=True)
    excluded = serializers.ListField(child=serializers.CharField(), read_only=True)
    size = serializers.IntegerField(source="total", read_only=True)
    used = serializers.IntegerField(read_only=True)
    free = serializers.SerializerMethodField()
    cooling = serializers.IntegerField(read_only=True)
    reserved = serializers.IntegerField(read_only=True)

    class Meta:
        model = IPPool
        fields = [
            "id",
            "region",
            "name",
            "family",
            "assignment",
            "cidr",
            "gateway",
            "nameservers",
            "excluded",
            "is_active",
            "size",
            "used",
            "free",
            "cooling",
            "reserved",
            "created_at",
        ]
        read_only_fields = fields

    def get_free(self, pool: IPPool) -> int:
        return max(pool.total - pool.used - pool.cooling - pool.reserved, 0)


def _nameservers_field(**extra) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=45), max_length=MAX_NAMESERVERS, required=False, **extra
    )


def _excluded_field(**extra) -> serializers.ListField:
    return serializers.ListField(
        child=serializers.CharField(max_length=100, allow_blank=True),
        max_length=MAX_EXCLUDED,
        required=False,
        help_text="addresses, first-last ranges or networks of the pool's family; for a pool of routed /64s "
        "each /64 an entry touches is kept out",
        **extra,
    )


class IPPoolCreateSerializer(serializers.Serializer):
    region = serializers.SlugRelatedField(slug_field="slug", queryset=Region.objects.all())
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    cidr = serializers.CharField(
        max_length=43, help_text="an IPv4 network (at most a /16) or an IPv6 prefix, e.g. 2001:db8:100::/48"
    )
    gateway = serializers.CharField(
        max_length=45,
        help_text="IPv4: inside the network; IPv6: link-local (fe80::1, usual for routed /64s) or inside it",
    )
    nameservers = _nameservers_field(default=list)
    excluded = _excluded_field(default=list)
    assignment = serializers.ChoiceField(
        choices=IPPool.Assignment.choices,
        required=False,
        allow_null=True,
        default=None,
        help_text="IPv6 only: prefix64 (a routed /64 per server, for a /44 to /63; the default for prefixes "
        "shorter than /64) or address (one address per server, for a /64 or longer)",
    )


class IPPoolUpdateSerializer(serializers.Serializer):
    """What may change of a pool. Its network, gateway, region and assignment are fixed: sending another
    value for one of them is a 400 (the same value is accepted)."""

    name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    nameservers = _nameservers_field()
    excluded = _excluded_field()
    is_active = serializers.BooleanField(required=False)

    FIXED = ("cidr", "gateway", "region", "assignment", "family")

    def validate(self, attrs: dict) -> dict:
        pool: IPPool = self.instance
        fixed = {}
        for name in self.FIXED:
            if name in self.initial_data and not _same(pool, name, self.initial_data[name]):
                fixed[name] = [_("A pool's %(field)s cannot change; create another pool.") % {"field": name}]
        if fixed:
            raise serializers.ValidationError(fixed)
        return attrs


def _same(pool: IPPool, name: str, value) -> bool:
    """Whether a fixed field was sent with the pool's own value (as a client that PATCHes what it read)."""
    try:
        if name == "cidr":
            return ipaddress.ip_network(str(value).strip()) == ipaddress.ip_network(pool.cidr)
        if name == "gateway":
            return ipaddress.ip_address(str(value).strip()) == ipaddress.ip_address(pool.gateway)
    except ValueError:
        return False
    current = {"region": pool.region.slug, "assignment": pool.assignment, "family": pool.family}[name]
    return value == current


def service_error(error: DjangoValidationError, fields_by_code: dict[str, str]) -> Response:
    """ipam's error as the API's: 400 with the field it concerns (`fields_by_code`, from
    panel.infrastructure.pools); an overlap with another pool is a 409."""
    fields: dict[str, list[str]] = {}
    codes = set()
    for item in error.error_list if hasattr(error, "error_list") else [error]:
        code = getattr(item, "code", None) or ""
        codes.add(code)
        fields.setdefault(fields_by_code.get(code, "non_field_errors"), []).extend(item.messages)
    first_field, messages = next(iter(fields.items()))
    message = messages[0] if first_field == "non_field_errors" else f"{first_field}: {messages[0]}"
    if "overlap" in codes:
        return error_response(status.HTTP_409_CONFLICT, message, "overlap", fields)
    return error_response(status.HTTP_400_BAD_REQUEST, message, "invalid", fields)


def _answer(pk: int, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(IPPoolSerializer(ipam.pools_with_usage().get(pk=pk)).data, status=status_code)


# Views.


class AdminIPPoolList(generics.ListAPIView):
    permission_classes = [IsAdminOrReadOnlyStaff]
    serializer_class = IPPoolSerializer

    def get_queryset(self):
        return ipam.pools_with_usage().order_by("id")

    @extend_schema(request=IPPoolCreateSerializer, responses={201: IPPoolSerializer})
    def post(self, request):
        data = IPPoolCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            pool = pools.create_pool(request.user, **data.validated_data)
        except DjangoValidationError as exc:
            return service_error(exc, pools.ERROR_FIELDS)
        return _answer(pool.pk, status.HTTP_201_CREATED)


class AdminIPPoolDetail(generics.RetrieveAPIView):
    permission_classes = [IsAdminOrReadOnlyStaff]
    serializer_class = IPPoolSerializer

    def get_queryset(self):
        return ipam.pools_with_usage()

    @extend_schema(request=IPPoolUpdateSerializer, responses={200: IPPoolSerializer})
    def patch(self, request, pk: int):
        pool = self.get_object()
        data = IPPoolUpdateSerializer(pool, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        try:
            pools.update_pool(pool, request.user, **data.validated_data)
        except DjangoValidationError as exc:
            return service_error(exc, pools.UPDATE_ERROR_FIELDS)
        return _answer(pool.pk)
