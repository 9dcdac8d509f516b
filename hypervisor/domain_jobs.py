"""A domain's libvirt job (a migration, a backup): its statistics, and the one of a given kind that runs."""

from __future__ import annotations

import libvirt

# What jobStats raises when there is no job to tell of: none runs (or ran), the domain went, or the
# driver keeps no job statistics.
_NO_JOB = (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_SUPPORT)


def job_stats(domain: libvirt.virDomain, flags: int = 0) -> dict:
    """The domain's job statistics (with VIR_DOMAIN_JOB_STATS_COMPLETED: the last completed job's);
    type VIR_DOMAIN_JOB_NONE when there is no job."""
    try:
        return domain.jobStats(flags)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in _NO_JOB:
            return {"type": libvirt.VIR_DOMAIN_JOB_NONE}
        raise


def running_job(domain: libvirt.virDomain, operation: int) -> dict | None:
    """The statistics of the job running on the domain when it is of that operation
    (VIR_DOMAIN_JOB_OPERATION_*), else None."""
    if not domain.isActive():
        return None
    stats = job_stats(domain)
    if stats.get("type", libvirt.VIR_DOMAIN_JOB_NONE) == libvirt.VIR_DOMAIN_JOB_NONE:
        return None
    if stats.get("operation") != operation:
        return None
    return stats


__all__ = ["job_stats", "running_job"]
