"""The real `sops`, `age` and `age-keygen` (tools/sops/build.sh) for tests: make an age key in a
temp dir and encrypt files exactly as a user would. Never the user's keys: every call runs with
an environment of its own (no SOPS_AGE_KEY*, XDG_CONFIG_HOME in the test's temp dir)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SopsTools:
    bin: Path

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
        env.update(XDG_CONFIG_HOME=str(home), HOME=str(home), **extra)
        return env

    def keygen(self, path: Path) -> str:
        """A new age identity file at `path`; its recipient (age1...)."""
        out = subprocess.run([str(self.bin / "age-keygen"), "-o", str(path)], capture_output=True, text=True,
                             check=True, timeout=30, env=self.env(path.parent))
        found = re.search(r"age1[0-9a-z]+", out.stderr)
        assert found, out.stderr
        return found.group(0)

    def encrypt(self, path: Path, *recipients: str, args: tuple[str, ...] = ()) -> bytes:
        """`sops --encrypt` of the YAML file `path` for the age recipients (stdout, the file is kept)."""
        cmd = [str(self.bin / "sops"), "--encrypt", "--age", ",".join(recipients), *args, str(path)]
        out = subprocess.run(cmd, capture_output=True, check=True, timeout=60, cwd=path.parent,
                             env=self.env(path.parent))
        return out.stdout

    def encrypt_in_place(self, repo: Path, rel: str) -> None:
        """`sops --encrypt --in-place REL` run in the repo, so its .sops.yaml creation rule applies."""
        subprocess.run([str(self.bin / "sops"), "--encrypt", "--in-place", rel], capture_output=True, check=True,
                       timeout=60, cwd=repo, env=self.env(repo.parent))

    def decrypt(self, content: bytes, key_file: Path, work: Path) -> bytes:
        """`sops --decrypt` of `content` (a temp file in `work`), as the reference."""
        src = work / "input.enc.yaml"
        src.write_bytes(content)
        out = subprocess.run([str(self.bin / "sops"), "--decrypt", str(src)], capture_output=True, check=True,
                             timeout=60, cwd=work, env=self.env(work, SOPS_AGE_KEY_FILE=str(key_file)))
        return out.stdout
