"""Every server that exists when per-server network filters arrive gets a firewall row that is behind
(version 1, applied 0), so that the periodic job binds its interface to its own filter `vps-<uuid>`
(IPv6 anti-spoofing, the firewall) instead of libvirt's clean-traffic, a batch at a time."""

from django.db import migrations


def create_rows(apps, schema_editor):
    Server = apps.get_model("panel", "Server")
    Firewall = apps.get_model("panel", "Firewall")
    live = Server.objects.exclude(status="deleted").values_list("pk", flat=True).iterator(chunk_size=2000)
    batch = []
    for pk in live:
        batch.append(Firewall(server_id=pk))
        if len(batch) == 2000:
            Firewall.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    Firewall.objects.bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [("panel", "0009_firewalls_and_extra_ipv4_quota")]

    operations = [migrations.RunPython(create_rows, migrations.RunPython.noop)]
