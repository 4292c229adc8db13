"""A real Prometheus server scrapes every storepulse component and sees what happened."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import httpx

from tests.helpers import Storepulse, free_port, payment_intent_succeeded, wait_for


def test_prometheus_scrapes_ingest_gateway_and_dataflow(tmp_path: Path) -> None:
    exe = shutil.which("prometheus")
    assert exe, "prometheus is not installed: `apt-get install prometheus` (CI's .ci/run does)"
    sp = Storepulse(tmp_path)
    flows_port = free_port()
    sp.extra_args = ["--flows-metrics-port", str(flows_port)]
    prom_port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: storepulse\n    static_configs: [{{targets: ['127.0.0.1:{sp.http_port}']}}]\n"
        f"  - job_name: storepulse-flows\n    static_configs: [{{targets: ['127.0.0.1:{flows_port}']}}]\n"
    )
    prom = subprocess.Popen([exe, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))
    try:
        sp.start()
        assert sp.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uuid.uuid4().hex}", "pi_prom", 100)).status_code == 200

        def value(query: str) -> float:
            try:
                r = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": query}, timeout=2).json()
            except (httpx.HTTPError, ValueError):
                return -1
            result = r.get("data", {}).get("result", [])
            return float(result[0]["value"][1]) if result else -1

        wait_for(lambda: value('sum(storepulse_ingest_deliveries_total{provider="stripe",outcome="accepted"})') == 1, 60,
                 "Prometheus to scrape the accepted delivery from ingest")
        wait_for(lambda: value("storepulse_flow_events_total") >= 1, 60, "Prometheus to scrape the dataflow's count")
        wait_for(lambda: value('up{job="storepulse"}') == 1 and value('up{job="storepulse-flows"}') == 1, 30, "both targets up")
    finally:
        sp.ensure_stopped()
        prom.terminate()
        prom.wait(10)
