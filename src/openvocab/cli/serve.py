"""``openvocab serve``: the HTTP API and page (issue 10 parts 1-3) on uvicorn; the app is :mod:`openvocab.serve`."""

from __future__ import annotations

import ipaddress
import logging
import signal
from pathlib import Path
from typing import Optional

import typer

from openvocab.cli.common import DEFAULT_MODEL, LABEL_BANK_HELP, DeviceOption, label_bank_arg, print_error, setup_logging
from openvocab.errors import InputError


def serve(
    model: Optional[list[str]] = typer.Option(
        None,
        "--model",
        "-m",
        help="Model to serve (hub id, directory or training run), as MODEL or NAME=MODEL; repeat for several, the first is the default "
        "(env OPENVOCAB_MODEL sets the default).",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    media_root: Optional[Path] = typer.Option(None, "--media-root", help="Folder whose files POST /classify may read by 'path' (default: uploads only)."),
    token: Optional[str] = typer.Option(
        None, "--token", envvar="OPENVOCAB_TOKEN", help="Bearer token required by POST /classify and POST /labels (env OPENVOCAB_TOKEN)."
    ),
    max_upload_mb: float = typer.Option(200.0, "--max-upload-mb", help="Largest upload, in MB (413 above it)."),
    max_labels: int = typer.Option(1000, "--max-labels", help="Most labels per request (422 above it)."),
    max_label_length: int = typer.Option(200, "--max-label-length", help="Longest label, in characters (422 above it)."),
    queue_size: int = typer.Option(8, "--queue-size", help="Requests that may wait for a worker (503 + Retry-After beyond)."),
    workers: int = typer.Option(1, "--workers", help="Requests processed at once (worker threads)."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds a request may wait and run before 504."),
    label_bank: Optional[Path] = typer.Option(None, "--label-bank", help=LABEL_BANK_HELP),
    no_label_bank: bool = typer.Option(False, "--no-label-bank", help="Do not cache label embeddings (no saved vocabularies, no POST /labels)."),
    device: DeviceOption = "cpu",
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No request log, warnings only."),
) -> None:
    """Serve the classify API and its web page. Example:

    openvocab serve --model /models/clip-vit-b-32 --port 8000

    openvocab serve --model clip=/models/clip-vit-b-32 --model mov=runs/mov_vggsound --media-root /srv/videos --token s3cret
    """
    setup_logging(quiet)
    if not quiet:
        logging.getLogger("openvocab.serve").setLevel(logging.INFO)
    for name, value, low in (
        ("--max-labels", max_labels, 1),
        ("--max-label-length", max_label_length, 1),
        ("--workers", workers, 1),
        ("--queue-size", queue_size, 0),
    ):
        if value < low:
            raise InputError(f"{name} must be >= {low}, got {value}")
    if max_upload_mb <= 0 or timeout <= 0:
        raise InputError("--max-upload-mb and --timeout must be positive")
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be 0-65535, got {port}")
    if media_root is not None and not media_root.expanduser().is_dir():
        raise InputError("--media-root: not a directory", path=media_root)
    try:
        import uvicorn

        from openvocab.serve.app import create_app
        from openvocab.serve.limits import Limits
        from openvocab.serve.models import load_models, parse_model_specs
    except ImportError as exc:
        raise InputError(f"openvocab serve needs FastAPI and uvicorn: pip install 'openvocab[serve]' ({exc})") from None

    specs = list(model or [DEFAULT_MODEL])
    parse_model_specs(specs)  # bad or repeated names fail before any model loads
    token = token or None
    if not token and not _loopback(host):
        print_error(f"warning: serving on {host} without a token: anyone who reaches port {port} can classify and write to the label bank (set --token)")
    served = load_models(specs, device=device, label_bank=label_bank_arg(label_bank, no_label_bank))
    limits = Limits(max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_labels=max_labels, max_label_length=max_label_length)
    app = create_app(
        models=served,
        media_root=media_root.expanduser() if media_root else None,
        token=token,
        limits=limits,
        queue_size=queue_size,
        workers=workers,
        timeout_s=timeout,
    )
    where = f"[{host}]" if ":" in host else host
    print_error(
        f"openvocab serve: http://{where}:{port}  models: {', '.join(m.name for m in served)}  media root: {media_root or 'off'}  token: {'on' if token else 'off'}"
    )
    # uvicorn stops gracefully on SIGTERM, then re-raises the signal to the handler it found: a no-op one makes
    # `kill PID` (and systemd's stop) end with exit code 0 after the shutdown, not death by signal
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        uvicorn.run(app, host=host, port=port, log_config=None, log_level="warning", access_log=False, timeout_graceful_shutdown=10, server_header=False)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print_error("openvocab serve: stopped")


def _loopback(host: str) -> bool:
    if host.strip().lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
