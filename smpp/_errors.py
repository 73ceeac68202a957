"""The smpp room's one error tree, rooted at SmppError.

Rule: an error says whose fault it is. `RemoteProtocolError` is the peer's (it carries the command_status
to answer with); `LocalProtocolError` is ours (a PDU we tried to send that SMPP or the session forbids);
`EncodeError` is a value that does not fit its field, and names the field.
"""

from __future__ import annotations

from ._constants import Status

__all__ = ["EncodeError", "LocalProtocolError", "RemoteProtocolError", "SmppError"]


class SmppError(Exception):
    """Base of every error the smpp room raises."""


class RemoteProtocolError(SmppError):
    """The peer broke SMPP.

    Attributes:
        status: the command_status to answer with (in a generic_nack or in the request's response).
        sequence_number: the offending PDU's sequence_number, or None when even the header was unreadable.
        command_id: the offending PDU's command_id, or None when unreadable.
        field: the name of the field that was bad, when one was.
        framing: True when the byte stream cannot be split into PDUs any more (a bad command_length):
            the connection must be closed after answering.
    """

    def __init__(
        self,
        msg: str,
        *,
        status: Status,
        sequence_number: int | None = None,
        command_id: int | None = None,
        field: str | None = None,
        framing: bool = False,
    ) -> None:
        super().__init__(msg)
        self.status = status
        self.sequence_number = sequence_number
        self.command_id = command_id
        self.field = field
        self.framing = framing

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_remote, (str(self), self.status, self.sequence_number, self.command_id, self.field,
                                  self.framing))


def _rebuild_remote(msg: str, status: Status, seq: int | None, cid: int | None, field: str | None,
                    framing: bool) -> RemoteProtocolError:
    return RemoteProtocolError(msg, status=status, sequence_number=seq, command_id=cid, field=field,
                               framing=framing)


class LocalProtocolError(SmppError):
    """We tried to do something SMPP or the session's state forbids."""


class EncodeError(LocalProtocolError, ValueError):
    """A value does not fit its field; `field` names it (for example `submit_sm.system_id`)."""

    def __init__(self, msg: str, *, field: str) -> None:
        super().__init__(f"{field}: {msg}")
        self.field = field
