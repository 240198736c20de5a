"""Files that must hold a secret for a while (google-auth reads the subject token from a file).

They live in a fresh directory only this user can enter (0700), each file 0600, and the directory is
removed when the credential is closed — or at interpreter exit, whichever comes first.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path


class PrivateDir:
    def __init__(self, prefix: str = "prefect-trigger-") -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))  # mkdtemp creates it 0700
        os.chmod(self.path, 0o700)
        atexit.register(self.remove)

    def write(self, name: str, text: str) -> Path:
        path = self.path / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def remove(self) -> None:
        """Idempotent: safe from both ``Credential.close`` and ``atexit``."""
        shutil.rmtree(self.path, ignore_errors=True)
        atexit.unregister(self.remove)
