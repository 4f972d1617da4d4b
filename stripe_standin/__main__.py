"""CLI: ``python -m stripe_standin --port 12111 --webhook-url URL --webhook-secret whsec_...``."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .server import StandinServer


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    env_secrets = [s.strip() for s in os.environ.get("STRIPE_WEBHOOK_SECRETS", "").split(",") if s.strip()]
    parser = argparse.ArgumentParser(prog="python -m stripe_standin",
                                     description="Local Stripe API stand-in (loopback only).")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--webhook-url", default=os.environ.get("STANDIN_WEBHOOK_URL") or None)
    parser.add_argument("--webhook-secret", default=env_secrets[0] if env_secrets else None)
    parser.add_argument("--api-key", default=None, help="accept only this secret key")
    parser.add_argument("--public-url", default=None, help="base URL used in session urls")
    parser.add_argument("--async-delay", type=float, default=0.5,
                        help="seconds before async payments resolve")
    parser.add_argument("--max-attempts", type=int, default=5)
    parser.add_argument("--initial-delay", type=float, default=0.5, help="first retry delay (s)")
    parser.add_argument("--backoff-factor", type=float, default=2.0)
    parser.add_argument("--max-delay", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=5.0, help="webhook request timeout (s)")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        server = StandinServer(
            args.host, args.port, api_key=args.api_key, public_url=args.public_url,
            async_delay=args.async_delay, verbose=args.verbose, url=args.webhook_url,
            secret=args.webhook_secret, max_attempts=args.max_attempts,
            initial_delay=args.initial_delay, backoff_factor=args.backoff_factor,
            max_delay=args.max_delay, timeout=args.timeout)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    print(f"stripe-standin listening on {server.base_url} "
          f"(webhooks -> {args.webhook_url or 'disabled'})", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
