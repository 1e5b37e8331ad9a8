"""ADD, DEL, CHECK, STATUS and GC of the bond plugin; cni.plugin.dispatch calls them."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from cni.core import result as results
from cni.core.config import BondConfig
from cni.core.errors import (
    INVALID_CONFIG,
    IO_FAILURE,
    PLUGIN_FAILURE,
    TRY_AGAIN_LATER,
    CNIError,
    apply_policy,
)
from cni.core.policy import NodePolicy
from cni.kernel.netlink import Link, Netns, NetnsUnavailable, open_netns, own_netns_fd
from cni.plugin import records

try:  # test-only fault points: build.sh leaves this module out of the shipped bin/bond
    from cni.plugin.faults import after_step
except ImportError:  # pragma: no cover - the shipped build

    def after_step(env: Mapping[str, str], name: str) -> None:
        """No fault points in a shipped build."""


log = logging.getLogger("cni.bond")


@dataclass(frozen=True)
class Args:
    """One invocation's CNI_* values; `env` is its whole environment, which IPAM gets too."""

    command: str
    container_id: str
    netns: str
    ifname: str
    path: str
    env: Mapping[str, str]
    policy: NodePolicy = dataclasses.field(default_factory=NodePolicy)


def _best_effort(what: str, step: Callable[[], object]) -> Callable[[], None]:
    """An undo step that logs its own failure, so the error that started the unwind survives."""

    def run() -> None:
        try:
            step()
        except Exception as exc:  # unwinding must go on whatever happened
            log.warning("rollback: %s failed: %s", what, exc)

    return run


def _step(args: Args, name: str) -> None:
    after_step(args.env, name)


def _ipam(conf: BondConfig, args: Args) -> Any:
    if conf.ipam is None:
        return None
    from cni.plugin.ipam import Ipam  # noqa: PLC0415 - only configs with IPAM pay for subprocess

    return Ipam(conf.raw, args.env)  # it execs with the CNI variables only (policy.ipam_env)


def _slave_links(present: Mapping[str, Link], conf: BondConfig) -> list[Link]:
    links = []
    for name in conf.links:
        link = present.get(name)
        if link is None:
            raise CNIError(
                INVALID_CONFIG,
                f"link {name!r} from 'links' is not in the pod's netns",
                "the bond must come after the attachments that create its links",
            )
        if link.master is not None:
            raise CNIError(
                INVALID_CONFIG, f"link {name!r} already has a master (index {link.master})"
            )
        links.append(link)
    return links


def _readiness(conf: BondConfig, slaves: list[Link]) -> None:
    """NIC diversity and failover readiness: warn on stderr or, with enforce, refuse (error 7)."""
    if conf.nic_diversity == "off" and conf.ha_checks == "off":
        return
    from cni.core import diversity, hachecks  # noqa: PLC0415
    from cni.kernel import hostdev  # noqa: PLC0415

    devices = hostdev.slave_devices(slaves)
    if unknown := diversity.unknown(devices):
        log.info("nicDiversity: no PCI parent for %s; diversity unknown", ", ".join(unknown))
    for line in apply_policy("nicDiversity", conf.nic_diversity, diversity.problems(devices)):
        log.warning("nicDiversity: %s", line)
    vfs = hostdev.vf_states(devices) if conf.ha_checks != "off" else []
    for line in apply_policy("haChecks", conf.ha_checks, hachecks.problems(conf.options, vfs)):
        log.warning("haChecks: %s", line)


def _move_in(conf: BondConfig, args: Args, undo: ExitStack) -> None:
    """linksInContainer: false (the node allows it): pull the named host links into the pod,
    each checked before any moves. Never a link a default route of the node goes out of: that
    would cut the node off."""
    fd = open_netns(args.netns)
    try:
        with Netns(None) as host:
            present = host.links()
            defaults = host.default_route_links()
            links = []
            for name in conf.links:
                link = present.get(name)
                if link is None:
                    raise CNIError(
                        INVALID_CONFIG, f"host link {name!r} from 'links' does not exist"
                    )
                if link.index in defaults:
                    raise CNIError(
                        INVALID_CONFIG,
                        f"host link {name!r} from 'links' carries the node's default route",
                        "the plugin never moves it into a pod: name other links",
                    )
                links.append(link)
            for link in links:
                name = link.name
                host.set_state(link.index, False)
                host.move(link.index, fd)
                undo.callback(_best_effort(f"move {name} back", _mover(args, name)))
    finally:
        os.close(fd)


def _mover(args: Args, name: str) -> Callable[[], None]:
    return lambda: _move_out(args, [name])


def _move_out(args: Args, names: list[str]) -> None:
    fd = own_netns_fd()
    try:
        with Netns(args.netns) as pod:
            for name in names:
                if (link := pod.link(name)) is not None:
                    pod.set_state(link.index, False)
                    pod.move(link.index, fd)
    finally:
        os.close(fd)


def _delete(pod: Netns, name: str) -> None:
    """The bond ADD made, by name: ADD checked that no link had it before."""
    if (link := pod.link(name)) is not None and link.kind == "bond":
        pod.delete(link.index)


def _enslave(pod: Netns, bond: int, slave: Link, undo: ExitStack) -> None:
    undo.callback(_best_effort(f"restore {slave.name}", lambda: _restore(pod, slave)))
    pod.enslave(slave.index, bond)


def _restore(pod: Netns, slave: Link) -> None:
    pod.set_state(slave.index, False)
    pod.set_master(slave.index, 0)
    pod.set_mtu(slave.index, slave.mtu)
    pod.set_state(slave.index, slave.up)


def _gateway(ipam: results.Result, family: int) -> str | None:
    return next((ip.gateway for ip in ipam.ips if ip.family == family and ip.gateway), None)


def cmd_add(args: Args, conf: BondConfig) -> dict[str, Any]:
    prev = results.parse(conf.prev_result, "prevResult")
    ipam = _ipam(conf, args)
    # Netlink round trips dominate a warm ADD: links are read in one dump, not one get each.
    with Netns(args.netns) as pod, ExitStack() as undo:
        present = pod.links()
        if args.ifname in present:
            raise CNIError(PLUGIN_FAILURE, f"interface {args.ifname!r} already exists in the pod")
        if not conf.links_in_container:
            _move_in(conf, args, undo)
            present = pod.links()
            _step(args, "links moved in")
        slaves = _slave_links(present, conf)
        _readiness(conf, slaves)
        # Each inverse is registered before its step: a timeout (cni.helper.server) may end a
        # step after the kernel or IPAM acted but before it returned.
        undo.callback(_best_effort(f"delete {args.ifname}", lambda: _delete(pod, args.ifname)))
        index = pod.create_bond(args.ifname, conf.options.kernel_values(), conf.mtu, conf.mac)
        _step(args, "bond created")
        for slave in slaves:
            _enslave(pod, index, slave, undo)
            _step(args, f"{slave.name} enslaved")
        pod.set_state(index, True)
        _step(args, "bond up")
        got: results.Result | None = None
        if ipam is not None:
            undo.callback(_best_effort("IPAM DEL", ipam.delete))
            got = ipam.add()
            _step(args, "IPAM added")
            for ip in got.ips:
                pod.add_address(index, ip.address)
            _step(args, "addresses added")
            for route in got.routes:
                family = 6 if ":" in str(route["dst"]) else 4
                pod.add_route(index, route, route.get("gw") or _gateway(got, family))
            _step(args, "routes added")
        _wait_for_carrier(pod, index, conf, slaves)
        _step(args, "carrier awaited")
        now = pod.links()
        bond = now.get(args.ifname)
        if bond is None or bond.index != index:
            raise CNIError(PLUGIN_FAILURE, f"bond {args.ifname} vanished during ADD")
        slave_ifaces = [
            results.Interface(s.name, now[s.name].mac if s.name in now else s.mac, args.netns)
            for s in slaves
        ]
        bond_iface = results.Interface(bond.name, bond.mac, args.netns, bond.mtu)
        out = results.build(prev, bond_iface, slave_ifaces, got, conf.dns)
        _record(conf, args, undo)
        undo.pop_all()
    log.info("ADD %s: bond %s over %s", args.container_id, args.ifname, ", ".join(conf.links))
    return out.render(conf.cni_version)


def _record(conf: BondConfig, args: Args, undo: ExitStack) -> None:
    """The attachment record the node's agent watches the bond by; last, so a failed ADD
    leaves none (and a record that cannot be written fails the ADD: the agent would never
    report on this bond)."""
    record = records.attachment(conf, args.container_id, args.netns, args.ifname, args.env)
    try:
        records.save(conf.attachments_dir, record)
    except OSError as exc:
        raise CNIError(
            IO_FAILURE,
            f"cannot write the attachment record in attachmentsDir {conf.attachments_dir}",
            f"{exc}; the folder must be writable by the plugin (it runs as root on the node)",
        ) from exc
    folder, cid, bond = conf.attachments_dir, args.container_id, args.ifname
    undo.callback(
        _best_effort("remove the attachment record", lambda: records.remove(folder, cid, bond))
    )


def _forget(conf: BondConfig, args: Args) -> None:
    """DEL's first step: the agent stops watching before the bond goes, so tearing it down is
    not reported as a bond that lost its legs."""
    try:
        records.remove(conf.attachments_dir, args.container_id, args.ifname)
    except OSError as exc:
        log.warning("DEL %s: cannot remove the attachment record: %s", args.container_id, exc)


def _wait_for_carrier(pod: Netns, index: int, conf: BondConfig, slaves: list[Link]) -> None:
    """ADD returns with a bond that carries traffic: the link monitor takes up to one interval
    (plus updelay) to see a slave up, so wait for the bond's carrier, a few intervals at most."""
    options = conf.options
    interval = options.miimon or options.arp_interval or 100
    timeout = max(0.5, ((options.updelay or 0) + 5 * interval) / 1000)
    bond = pod.wait_for_carrier(index, timeout)
    if bond is None or bond.carrier:
        return
    now = pod.links()
    carrying = [s.name for s in slaves if s.name in now and now[s.name].carrier]
    if carrying:
        log.warning(
            "bond %s has no carrier %.1f s after ADD although %s %s; check the link monitor",
            bond.name,
            timeout,
            ", ".join(carrying),
            "has" if len(carrying) == 1 else "have",
        )
    else:
        log.info("bond %s has no carrier: none of its slaves has", bond.name)


def cmd_del(args: Args, conf: BondConfig) -> None:
    """Tear down whatever is left; nothing being gone is ever an error."""
    _forget(conf, args)
    if args.netns and os.path.exists(args.netns):
        try:
            _del_in_netns(args, conf)
        except NetnsUnavailable as exc:
            log.info("DEL %s: netns %s is gone: %s", args.container_id, args.netns, exc.details)
    else:
        log.info("DEL %s: no netns %r; nothing to release in it", args.container_id, args.netns)
    try:
        ipam = _ipam(conf, args)
        if ipam is not None:
            ipam.delete()
    except CNIError as exc:
        if exc.code == TRY_AGAIN_LATER:
            raise
        log.warning(
            "DEL %s: IPAM release failed, ignored: %s %s", args.container_id, exc.msg, exc.details
        )


def _del_in_netns(args: Args, conf: BondConfig) -> None:
    with Netns(args.netns) as pod:
        present = pod.links()
        bond = present.get(args.ifname)
        if bond is not None and bond.kind == "bond":
            enslaved = [
                present[name]
                for name in conf.links
                if name in present and present[name].master == bond.index
            ]
            # Deleting the bond releases every slave (the kernel restores its MAC and closes it);
            # the configured ones are then brought back up, as ADD found them for the next user.
            pod.delete(bond.index)
            for slave in enslaved:
                pod.set_state(slave.index, True)
    if not conf.links_in_container:
        if args.policy.host_links:
            _move_out(args, list(conf.links))
        else:  # ADD would have refused: nothing of the node's is in there to give back
            log.warning(
                "DEL %s: linksInContainer is false but this node does not allow host links "
                "(%s): no link moved back",
                args.container_id,
                args.policy.via,
            )


def cmd_check(args: Args, conf: BondConfig) -> None:
    if conf.prev_result is None:
        raise CNIError(INVALID_CONFIG, "CHECK needs prevResult")
    prev = results.parse(conf.prev_result, "prevResult")
    with Netns(args.netns) as pod:
        present = pod.links()
        bond = present.get(args.ifname)
        if bond is None or bond.kind != "bond":
            raise CNIError(PLUGIN_FAILURE, f"CHECK: no bond {args.ifname!r} in {args.netns}")
        problems = _option_drift(present, conf, bond)
        if not bond.up:
            problems.append(f"{args.ifname} is down")
        for name in conf.links:
            slave = present.get(name)
            if slave is None:
                problems.append(f"link {name} is missing")
            elif slave.master != bond.index:
                problems.append(f"link {name} is not a slave of {args.ifname}")
            elif not slave.up:
                problems.append(f"link {name} is down")
        on_bond = pod.addresses(bond.index)
        for ip in prev.addresses_of(args.ifname, args.netns):
            if ip.address not in on_bond:
                problems.append(f"address {ip.address} from prevResult is not on {args.ifname}")
    if problems:
        raise CNIError(PLUGIN_FAILURE, f"CHECK {args.ifname}: " + "; ".join(problems))
    ipam = _ipam(conf, args)
    if ipam is not None:
        ipam.check(prev)


def _option_drift(present: Mapping[str, Link], conf: BondConfig, bond: Link) -> list[str]:
    drift = []
    for field, value in conf.options.kernel_values().items():
        have: object = bond.bond.get(field)
        want: object = value
        if field == "primary":
            link = present.get(str(value))
            want = link.index if link else None
        if isinstance(value, tuple):
            want, have = set(value), set(bond.bond.get(field) or ())
        if have != want:
            drift.append(f"option {field} is {have!r}, config says {want!r}")
    if conf.mtu and bond.mtu != conf.mtu:
        drift.append(f"mtu is {bond.mtu}, config says {conf.mtu}")
    return drift


def cmd_status(args: Args, conf: BondConfig) -> None:
    ipam = _ipam(conf, args)
    if ipam is not None:
        ipam.status()


def cmd_gc(args: Args, conf: BondConfig) -> None:
    valid = conf.raw.get("cni.dev/valid-attachments")
    if isinstance(valid, list):
        entries = [entry for entry in valid if isinstance(entry, dict)]
        try:
            for name in records.gc(conf.attachments_dir, conf.name, entries):
                log.info("GC: removed the attachment record %s", name)
        except OSError as exc:
            log.warning("GC: cannot clean the attachment records: %s", exc)
    ipam = _ipam(conf, args)
    if ipam is not None:
        ipam.gc()
