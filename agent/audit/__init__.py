"""Edge: the audit sink (hash-chained JSON Lines), its verifier and its reader."""

from agent.audit._log import AuditLog, record_hash
from agent.audit._read import read_records
from agent.audit._verify import Verdict, verify

__all__ = ["AuditLog", "Verdict", "read_records", "record_hash", "verify"]
