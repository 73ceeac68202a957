"""Kannel's configuration, for the interop tests and the benchmarks that run it against the simulator: bearerbox
with one SMPP transceiver bind, smsbox with its sendsms interface, and whatever groups the caller adds.

A blank line ends a group in Kannel's files (../shared/PEERS.md): the groups are joined by exactly one blank line
and none may hold one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["kannel_config"]

HOST = "127.0.0.1"


def kannel_config(*, smpp_port: int, admin_port: int, box_port: int, sendsms_port: int, logs: Path,
                  admin_password: str, sendsms_user: tuple[str, str], log_level: int, max_pending: int,
                  msg_id_type: str | None = None, sendsms_max_messages: int | None = None,
                  extra_groups: Sequence[str] = ()) -> str:
    """The whole file. The SMSC account is the simulator's `kannel` / `kannel1`; bearerbox keeps delivery
    reports in memory (`dlr-storage = internal`) and no store-file.

    Args:
        logs: the directory of Kannel's log files (bearerbox.log, smsc.log, smsbox.log).
        log_level: 0 logs every message (what a test wants to read), 2 warnings only (what a benchmark can afford).
        msg_id_type: Kannel's `msg-id-type` for the bind (None: ids compared as strings).
        sendsms_max_messages: the sendsms user's `max-messages` (None: Kannel's default).
        extra_groups: more groups, each one group's lines (sms-service, for example).
    """
    id_type = f"msg-id-type = {msg_id_type}" if msg_id_type else "# msg-id-type unset: ids are compared as strings"
    user, password = sendsms_user
    max_messages = "" if sendsms_max_messages is None else f"\nmax-messages = {sendsms_max_messages}"
    groups = [
        f"""group = core
admin-port = {admin_port}
admin-interface = {HOST}
admin-password = {admin_password}
status-password = {admin_password}
admin-allow-ip = "{HOST}"
smsbox-port = {box_port}
smsbox-interface = {HOST}
box-allow-ip = "{HOST}"
dlr-storage = internal
log-file = "{logs / 'bearerbox.log'}"
log-level = {log_level}""",
        f"""group = smsc
smsc = smpp
smsc-id = sim
host = {HOST}
port = {smpp_port}
transceiver-mode = true
smsc-username = kannel
smsc-password = kannel1
system-type = ""
{id_type}
max-pending-submits = {max_pending}
enquire-link-interval = 30
reconnect-delay = 1
log-file = "{logs / 'smsc.log'}"
log-level = {log_level}""",
        f"""group = smsbox
bearerbox-host = {HOST}
bearerbox-port = {box_port}
sendsms-port = {sendsms_port}
sendsms-interface = {HOST}
log-file = "{logs / 'smsbox.log'}"
log-level = {log_level}""",
        f"""group = sendsms-user
username = {user}
password = {password}{max_messages}""",
        *extra_groups,
    ]
    for group in groups:
        if "\n\n" in group:
            raise ValueError(f"a Kannel group may not hold a blank line: {group.splitlines()[0]!r}")
    return "\n\n".join(groups) + "\n"
