"""``rmbg up``: Triton and the gateway together, the embedded single-machine service (Ctrl-C stops both)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from rmbg_cli import gateway, serve
from rmbg_cli.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from rmbg_cli.extras import require

log = logging.getLogger("rmbg.up")



def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    s = sub.add_parser("up", help="start Triton and the gateway together and print the endpoints (Ctrl-C stops)")
    serve.add_triton_flags(s, host=False)
    gateway.add_flags(s, skip=("triton",))
    s.add_argument("--strict-models", action="store_true",
                   help="do not serve missing models' names with a built one (see the note printed at start) "
                        "(default: off)")
    return s


def fallback_aliases(ready: list[str], strict: bool) -> dict[str, str]:
    """Where the repository holds one family only, its sibling's hosted names are served by it (said loudly).

    The documented examples name both RMBG-1.4 (isnet) and RMBG-2.0 (birefnet); ``make repo`` builds
    IS-Net only. ``--alias bria:2@1=isnet`` does this by hand; ``rmbg up`` does it for all
    the RMBG-2.0 names unless --strict-models.
    """
    from rmbg_backend.contract import model_of_ensemble
    from rmbg_hosted.aliases import MODEL_ALIASES

    families = {m for m in (model_of_ensemble(name) for name in ready) if m}
    if strict or len(families) != 1:
        return {}
    (only,) = families
    return {name: only for name, family in MODEL_ALIASES.items() if family != only}


def announce(base: str, triton, ready: list[str], aliases: dict[str, str], log_file) -> None:
    print(f"Triton:  gRPC {triton.grpc_url}  HTTP {triton.http_url}  (loopback only; log {log_file})")
    print(f"models:  {', '.join(ready)}")
    if aliases:
        print(f"NOTE:    only {sorted(set(aliases.values()))[0]} is built: {', '.join(sorted(aliases))} are served "
              "by it (build the other model, or pass --strict-models to refuse those names)")
    print(f"gateway: {base}")
    print(f"  POST {base}/v1                                      Runware task arrays")
    print(f"  POST {base}/fal-ai/bria/background/remove           fal (and /replace, /queue/...)")
    print(f"  POST {base}/api/v1/ie/requestqueue/apikey/requests  GMI queue")
    print(f"  GET  {base}/docs  {base}/metrics  {base}/readyz")
    print("Ctrl-C to stop", flush=True)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def run(a: argparse.Namespace) -> int:
    from rmbg_server.hidden_args import hide_secret_flags  # secrets given as flags vanish from ps (README)
    hide_secret_flags(a)
    launcher = require("rmbg_server.launcher", "server", "up", gateway.GATEWAY_NEEDS)
    try:
        checked = gateway.settings_from(a, triton="127.0.0.1:0")  # flag errors before Triton starts
    except ValueError as exc:
        print(f"rmbg up: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if a.log_file is None:  # keep the terminal for the endpoints; Triton's own log goes beside the data
        a.log_file = checked.data_dir / "triton.log"
        a.log_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Triton stays private: the gateway is the door (its port is checked with Triton's, before either starts)
        triton, watchdog = serve.start_triton(a, "127.0.0.1", also_free=[(checked.host, checked.port, "--port")])
    except launcher.LaunchError as exc:
        print(f"rmbg up: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        ready = serve.ready_models(triton)
        aliases = fallback_aliases(ready, a.strict_models)
        alias = [f"{name}={model}" for name, model in aliases.items()] + list(checked.alias)  # --alias wins
        settings = gateway.settings_from(a, triton=triton.grpc_url, alias=alias)
        server = gateway.serve(settings)
        stopped = threading.Event()

        def watch() -> None:
            """Print the endpoints once the gateway listens; Triton dying takes the gateway down with it."""
            while not server.started and not stopped.wait(0.05):
                pass
            if server.started:
                announce(settings.base_url, triton, ready, aliases, a.log_file)
            while not stopped.wait(1.0):
                if triton.process.poll() is not None:
                    print(f"rmbg up: tritonserver exited with code {triton.process.returncode}", file=sys.stderr)
                    server.should_exit = True
                    return

        threading.Thread(target=watch, daemon=True).start()
        # uvicorn re-raises the signal that stopped it once it is done; with this handler a SIGTERM
        # then unwinds to the finally below (Triton is stopped) instead of killing the process.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        stopped.set()
        return EXIT_OK if server.started else EXIT_FAILED
    finally:
        log.info("stopping Triton ...")
        watchdog.stop()
        triton.stop()
