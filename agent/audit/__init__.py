"""Edge: the audit sink (hash-chained JSON Lines) and its verifier."""

from agent.audit._log import AuditLog, record_hash
from agent.audit._verify import Verdict, verify

__all__ = ["AuditLog", "Verdict", "record_hash", "verify"]
