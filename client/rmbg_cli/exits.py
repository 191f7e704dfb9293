"""The ``rmbg`` command's exit statuses, one meaning each, shared by every subcommand.

Scripts branch on them (README, "Use"): 0 everything done; 1 the work was attempted and
something failed (``rmbg remove``: some files, each listed); 2 nothing could be attempted
(a bad flag, no inputs, no server, a missing extra), which is also argparse's own status.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C
