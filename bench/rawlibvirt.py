"""The baseline: the libvirt calls a create makes (disk volume, seed volume, define, start), made directly
with libvirt-python and nothing else. No Django here: this module also runs in plain child processes."""

from __future__ import annotations

import time
from dataclasses import dataclass

import libvirt


@dataclass(frozen=True)
class Job:
    """One domain to create on `uri`: the XML documents are made beforehand by the panel's own code."""

    uri: str
    uuid: str
    pool: str
    disk_xml: str
    seed_xml: str
    domain_xml: str
    seed: bytes = b""  # uploaded into the seed volume (real hosts only; the simulated host stores no data)
    # The server's network filters, defined before the domain that references them (real hosts only: the
    # simulated host has no network filter driver).
    filters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Timing:
    uuid: str
    total: float  # volumes + define + start, seconds
    define_start: float  # define (with the network filters) + start only, seconds


def _silence(_ctx, _err) -> None:
    pass


def create(conn: libvirt.virConnect, job: Job) -> Timing:
    start = time.perf_counter()
    pool = conn.storagePoolLookupByName(job.pool)
    pool.createXML(job.disk_xml, 0)
    volume = pool.createXML(job.seed_xml, 0)
    if job.seed:
        stream = conn.newStream(0)
        volume.upload(stream, 0, len(job.seed), 0)
        stream.send(job.seed)
        stream.finish()
    defined = time.perf_counter()
    for filter_xml in job.filters:
        conn.nwfilterDefineXML(filter_xml)
    domain = conn.defineXML(job.domain_xml)
    domain.create()
    end = time.perf_counter()
    return Timing(job.uuid, end - start, end - defined)


def run_jobs(jobs: list[Job]) -> tuple[list[Timing], float]:
    """Create every job's domain on a connection of its own URI (opened first, outside the timings).
    Returns the timings and the wall time of all the creates."""
    libvirt.registerErrorHandler(_silence, None)
    connections: dict[str, libvirt.virConnect] = {}
    for job in jobs:
        if job.uri not in connections:
            connections[job.uri] = libvirt.open(job.uri)
    start = time.perf_counter()
    timings = [create(connections[job.uri], job) for job in jobs]
    return timings, time.perf_counter() - start


def run_in_processes(jobs: list[Job], processes: int) -> tuple[list[Timing], float]:
    """The jobs split over `processes` child processes (spawned: no inherited threads or database
    connections), each with connections of its own, as the panel's worker processes have.
    Returns every timing and the wall time from the first create to the last."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    chunks = [jobs[i::processes] for i in range(processes)]
    with context.Pool(processes) as pool:
        results = pool.map(_run_timed, chunks)
    timings = [t for chunk_timings, _start, _end in results for t in chunk_timings]
    wall = max(end for _t, _s, end in results) - min(start for _t, start, _e in results)
    return timings, wall


def _run_timed(jobs: list[Job]) -> tuple[list[Timing], float, float]:
    libvirt.registerErrorHandler(_silence, None)
    connections = {uri: libvirt.open(uri) for uri in {job.uri for job in jobs}}
    start = time.time()
    timings = [create(connections[job.uri], job) for job in jobs]
    return timings, start, time.time()


def destroy(
    conn: libvirt.virConnect, uuid: str, pool: str, volumes: list[str], filters: tuple[str, ...] = ()
) -> None:
    """Remove a domain, its volumes and its network filters (by name, the root filter first), whatever of
    them exists."""
    try:
        domain = conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError:
        domain = None
    if domain is not None:
        if domain.isActive():
            domain.destroy()
        domain.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    for name in filters:
        try:
            conn.nwfilterLookupByName(name).undefine()
        except libvirt.libvirtError:
            pass
    storage = conn.storagePoolLookupByName(pool)
    storage.refresh(0)
    for name in volumes:
        try:
            storage.storageVolLookupByName(name).delete(0)
        except libvirt.libvirtError:
            pass
