"""API v1 views: thin; every state change goes through panel.servers.actions or hypervisor.hosts."""

from django.db import transaction
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext_noop
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import errors, ledger, payments
from billing.ledger import with_withheld
from billing.models import Invoice, Plan
from billing.money import currency
from hypervisor import hosts, placement, routing
from hypervisor.models import Host, Region
from panel import dispatch
from panel.accounts import quotas, ssh_keys
from panel.activity import log as activity
from panel.api import serializers as api_serializers
from panel.api.permissions import IsAdminOrReadOnlyStaff, IsPanelStaff
from panel.models import Operation, Server, Snapshot, SSHKey, User
from panel.servers import actions, catalog
from panel.servers import queries as server_queries
from panel.servers.queries import attach_addresses
from panel.usage import metering


class RegionList(generics.ListAPIView):
    serializer_class = api_serializers.RegionSerializer
    queryset = Region.objects.all()

    def get_serializer_context(self):
        context = super().get_serializer_context()
        context["regions_with_hosts"] = set(placement.schedulable_hosts().values_list("region_id", flat=True))
        return context


class PlanList(generics.ListAPIView):
    serializer_class = api_serializers.PlanSerializer
    queryset = Plan.objects.filter(is_active=True)

    def get_serializer_context(self):
        context = super().get_serializer_context()
        region = None
        slug = self.request.query_params.get("region")
        if slug:
            region = get_object_or_404(Region, slug=slug)
        context["available_plans"] = catalog.available_plans(region)
        return context


class ImageList(generics.ListAPIView):
    serializer_class = api_serializers.ImageSerializer
    queryset = catalog.active_images()


class IsoList(generics.ListAPIView):
    """Installer ISOs a customer can attach to a server (the attach_iso action)."""

    serializer_class = api_serializers.IsoSerializer
    queryset = catalog.active_isos()


class SSHKeyList(generics.ListCreateAPIView):
    serializer_class = api_serializers.SSHKeySerializer

    def get_queryset(self):
        return SSHKey.objects.filter(owner=self.request.user)

    def perform_create(self, serializer):
        with transaction.atomic():
            ssh_keys.record_ssh_key(serializer.save(), added=True)


class SSHKeyDetail(generics.RetrieveDestroyAPIView):
    serializer_class = api_serializers.SSHKeySerializer

    def get_queryset(self):
        return SSHKey.objects.filter(owner=self.request.user)

    def perform_destroy(self, instance):
        with transaction.atomic():
            ssh_keys.record_ssh_key(instance, added=False)
            instance.delete()


def customer_servers(user: User):
    return Server.objects.filter(owner=user).select_related("plan", "image", "region")


class AddressesMixin:
    """List views of servers: fetch the page's IPv4 addresses in one query."""

    def paginate_queryset(self, queryset):
        page = super().paginate_queryset(queryset)
        return attach_addresses(page) if page is not None else None


class ServerList(AddressesMixin, generics.ListAPIView):
    serializer_class = api_serializers.ServerSerializer

    def get_queryset(self):
        return customer_servers(self.request.user).exclude(status=Server.Status.DELETED)

    @extend_schema(
        request=api_serializers.ServerCreateSerializer, responses={202: api_serializers.ServerSerializer}
    )
    def post(self, request):
        data = api_serializers.ServerCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        values = data.validated_data
        server = actions.order_from(request.user, values)
        return Response(api_serializers.server_representation(server), status=status.HTTP_202_ACCEPTED)


class ServerDetail(generics.RetrieveAPIView):
    serializer_class = api_serializers.ServerSerializer

    def get_queryset(self):
        return customer_servers(self.request.user)

    def retrieve(self, request, *args, **kwargs):
        """What clients poll while a server is made or changed: read in prepared statements, represented by
        the process's one serializer (the generic view's ORM query and serializer cost twice as much)."""
        server = server_queries.own_server(request.user.pk, kwargs["pk"])
        if server is None:
            raise Http404
        return Response(api_serializers.server_representation(server))

    @extend_schema(responses={202: api_serializers.ServerSerializer})
    def delete(self, request, pk):
        server = self.get_object()
        actions.delete_server(server, request.user)
        return Response(api_serializers.ServerSerializer(server).data, status=status.HTTP_202_ACCEPTED)


class ServerActionList(generics.ListAPIView):
    serializer_class = api_serializers.ActionSerializer

    def server(self) -> Server:
        return get_object_or_404(customer_servers(self.request.user), pk=self.kwargs["pk"])

    def get_queryset(self):
        return Operation.objects.filter(server=self.server())

    @extend_schema(
        request=api_serializers.ActionCreateSerializer, responses={202: api_serializers.ActionSerializer}
    )
    def post(self, request, pk):
        server = self.server()
        data = api_serializers.ActionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        params = dict(data.validated_data)
        operation = actions.perform(server, params.pop("type"), request.user, params)
        answer = api_serializers.ActionSerializer(operation, context=self.get_serializer_context()).data
        if operation.type in actions.PASSWORD_ACTIONS:  # the one-time root password, shown only here
            answer["password"] = operation.one_time_password
        return Response(answer, status=status.HTTP_202_ACCEPTED)


class ServerSnapshotList(generics.ListAPIView):
    serializer_class = api_serializers.SnapshotSerializer

    def get_queryset(self):
        server = get_object_or_404(customer_servers(self.request.user), pk=self.kwargs["pk"])
        return Snapshot.objects.filter(server=server)


class ServerUsage(APIView):
    """The server's traffic in its current monthly period against its allowance."""

    @extend_schema(responses={200: dict})
    def get(self, request, pk):
        server = get_object_or_404(customer_servers(request.user), pk=pk)
        report = metering.usage_report(server)
        timestamp = serializers.DateTimeField()
        for key in ("period_start", "period_end"):  # in the installation's time zone, like every other field
            report[key] = timestamp.to_representation(report[key])
        return Response(report)


class ServerActionDetail(generics.RetrieveAPIView):
    serializer_class = api_serializers.ActionSerializer

    def get_object(self):
        return get_object_or_404(
            Operation,
            pk=self.kwargs["action_id"],
            server__pk=self.kwargs["pk"],
            server__owner=self.request.user,
        )


class Account(APIView):
    @extend_schema(responses={200: dict})
    def get(self, request):
        user = request.user
        return Response(
            {
                "email": user.email,
                "language": user.language or None,
                "balance": str(ledger.balance(user)),
                "currency": currency(),
                "quota": quotas.report(user),
            }
        )


# Staff and admin scope.


class AdminHostList(generics.ListAPIView):
    permission_classes = [IsAdminOrReadOnlyStaff]
    serializer_class = api_serializers.HostSerializer

    def get_queryset(self):
        return Host.objects.select_related("region").order_by("name")

    @extend_schema(
        request=api_serializers.HostCreateSerializer, responses={202: api_serializers.HostSerializer}
    )
    def post(self, request):
        data = api_serializers.HostCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            host = hosts.register_host(**data.service_arguments())
            activity.record_host_change(
                host, request.user, gettext_noop("Host %(host)s added (%(uri)s)."), {"uri": host.uri}
            )
            dispatch.after_commit(dispatch.PROBE_HOST, host.pk, queue=routing.queue_for_host(host))
        return Response(api_serializers.HostSerializer(host).data, status=status.HTTP_202_ACCEPTED)


class AdminHostDetail(generics.RetrieveAPIView):
    permission_classes = [IsAdminOrReadOnlyStaff]
    serializer_class = api_serializers.HostSerializer

    def get_queryset(self):
        return Host.objects.select_related("region")

    @extend_schema(
        request=api_serializers.HostUpdateSerializer, responses={200: api_serializers.HostSerializer}
    )
    def patch(self, request, pk):
        host = self.get_object()
        data = api_serializers.HostUpdateSerializer(host, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        enabled = changes.pop("enabled", None)
        reason = changes.pop("disabled_reason", "")
        with transaction.atomic():
            hosts.update_settings(host.pk, changes)
            if enabled is not None:
                hosts.set_enabled(host.pk, enabled, reason)
            activity.record_host_change(
                host,
                request.user,
                gettext_noop("Host %(host)s changed: %(changes)s."),
                {
                    "changes": describe_changes(
                        {**changes, **({} if enabled is None else {"enabled": enabled})}
                    )
                },
            )
        return Response(api_serializers.HostSerializer(self.get_object()).data)


def describe_changes(changes: dict) -> str:
    return ", ".join(f"{name}={value}" for name, value in sorted(changes.items())) or "-"


class AdminServerList(AddressesMixin, generics.ListAPIView):
    permission_classes = [IsPanelStaff]
    serializer_class = api_serializers.AdminServerSerializer

    def get_queryset(self):
        queryset = Server.objects.select_related("plan", "image", "region", "owner", "host")
        if self.request.query_params.get("include_deleted") != "1":
            queryset = queryset.exclude(status=Server.Status.DELETED)
        return queryset


class AdminCustomerList(generics.ListAPIView):
    permission_classes = [IsPanelStaff]
    serializer_class = api_serializers.CustomerSerializer

    def get_queryset(self):
        return ledger.annotate_balance(User.objects.all()).order_by("id")


class AdminCustomerQuota(APIView):
    """GET the customer's quota with usage; PUT new limits (null: no limit)."""

    permission_classes = [IsPanelStaff]

    def customer(self, pk: int) -> User:
        return get_object_or_404(User, pk=pk)

    @staticmethod
    def answer(customer: User) -> Response:
        return Response({**quotas.report(customer), "new_account_limits": customer.new_account_limits})

    @extend_schema(responses={200: dict})
    def get(self, request, pk: int):
        return self.answer(self.customer(pk))

    @extend_schema(request=api_serializers.QuotaSerializer, responses={200: dict})
    def put(self, request, pk: int):
        customer = self.customer(pk)
        data = api_serializers.QuotaSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        limits = dict(data.validated_data)
        new_account = limits.pop("new_account_limits", None)
        try:
            with transaction.atomic():
                quotas.set_limits(customer, limits, by=request.user)
                if new_account is False:
                    quotas.lift_new_account_limits(customer, by=request.user)
                elif new_account is True:
                    quotas.impose_new_account_limits(customer, by=request.user)
        except quotas.OwnAccount as exc:
            raise actions.Forbidden(exc.message) from exc
        return self.answer(customer)


def _own_invoices(request):
    """The caller's issued invoices with what they show besides their rows: the tax withheld from each,
    the account (the buyer of one that did not record it), its lines and credit notes."""
    return (
        with_withheld(Invoice.objects.filter(account=request.user).exclude(status=Invoice.Status.DRAFT))
        .select_related("account")
        .prefetch_related("lines", "credit_notes")
    )


class InvoiceList(generics.ListAPIView):
    serializer_class = api_serializers.InvoiceSerializer

    def get_queryset(self):
        return _own_invoices(self.request)


class InvoiceDetail(generics.RetrieveAPIView):
    serializer_class = api_serializers.InvoiceSerializer

    def get_queryset(self):
        return _own_invoices(self.request)


class AdminCustomerPayments(APIView):
    """Record a payment for a customer (a bank transfer, say); idempotent on `reference`."""

    permission_classes = [IsPanelStaff]

    @extend_schema(
        request=api_serializers.PaymentCreateSerializer,
        responses={201: api_serializers.PaymentSerializer, 200: api_serializers.PaymentSerializer},
    )
    def post(self, request, pk: int):
        customer = get_object_or_404(User, pk=pk)
        data = api_serializers.PaymentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            payment, created = payments.record_payment(
                customer, data.validated_data["amount"], data.validated_data["reference"],
                method=data.validated_data["method"], by=request.user,
            )  # fmt: skip
        except errors.OwnAccount as exc:
            raise actions.Forbidden(exc.message) from exc
        except errors.BillingError as exc:
            raise actions.Unprocessable(exc.message) from exc
        return Response(api_serializers.PaymentSerializer(payment).data, status=201 if created else 200)
