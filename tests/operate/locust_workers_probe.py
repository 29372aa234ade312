"""Loaded beside loadtest/locustfile.py (`-f loadtest/locustfile.py,tests/operate/locust_workers_probe.py`): on the
master, tallies what each worker reported (requests in Locust's statistics, samples in our HDR histograms) and prints
it as one JSON line when the master quits. Defines no users: the run is our locustfile's."""
import json
from collections import defaultdict

from hdrh.histogram import HdrHistogram
from locust import events
from locust.runners import MasterRunner

MARKER = "WORKER-REPORTS "
_reports = defaultdict(lambda: {"reports": 0, "requests": 0, "hdr_samples": 0})


@events.worker_report.add_listener
def _on_worker_report(client_id, data, **_kwargs):
    tally = _reports[client_id]
    tally["reports"] += 1
    tally["requests"] += data.get("stats_total", {}).get("num_requests", 0)
    for encoded in data.get("modelport_hdr", {}).values():
        tally["hdr_samples"] += HdrHistogram.decode(encoded).get_total_count()


@events.quitting.add_listener
def _on_quitting(environment, **_kwargs):
    if isinstance(environment.runner, MasterRunner):
        print(MARKER + json.dumps(dict(_reports)), flush=True)
