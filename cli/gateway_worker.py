"""One gateway worker of `trident serve --workers N` (cli/workers.py starts it): `python -m cli.gateway_worker
RUN_DIR INDEX`. Its own gRPC channels to the one Triton the server started, its own listening socket on the
shared port, its share of nothing but the run folder's in-flight slots and metrics files."""

from __future__ import annotations

import sys
from pathlib import Path

from cli.supervisor import DrainingServer, gateway_config
from cli.workers import SLOTS_FILE, WorkerPlan, first_slot, reuse_port_sockets
from gateway.app import create_app
from gateway.limits import SharedSlots
from gateway.logs import configure_logging


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m cli.gateway_worker RUN_DIR INDEX (started by trident serve --workers N)",
              file=sys.stderr)
        return 2
    run_dir, index = Path(argv[0]), int(argv[1])
    plan = WorkerPlan.load(run_dir)
    configure_logging(plan.log_format)
    app = create_app(plan.settings)
    limit = plan.settings.max_concurrent_requests
    app.state.admission.shared = SharedSlots(run_dir / SLOTS_FILE, limit, first_slot(index, plan.workers, limit))
    server = DrainingServer(gateway_config(app, plan.host, plan.port), app.state.admission, plan.drain_timeout_s,
                            repeat_signal_skips_drain=False)  # the serve process decides when to kill
    server.run(sockets=reuse_port_sockets(plan.host, plan.port, listen=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
