"""Outbox (durable, rotating, per-hook cursors, torn-line repair) and the hooks against real receivers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from firmware_app.config import CommandHookConfig, GpioHookConfig, HttpHookConfig, MqttHookConfig
from firmware_app.events import Dispatcher, Outbox, new_event
from firmware_app.hooks import Hook, HookError
from firmware_app.hooks.command import CommandHook
from firmware_app.hooks.gpio import GpioHook
from firmware_app.hooks.http import SIGNATURE_HEADER, HttpHook, verify
from tests.test_fw_fixtures import free_port


class Receiver:
    """A local HTTP endpoint that records (event id, signature ok); can fail the first `fail` requests."""

    def __init__(self, secret: str = "", fail: int = 0, status: int = 503, delay_s: float = 0.0):
        self.secret, self.fail, self.status, self.delay_s = secret, fail, status, delay_s
        self.received: list[tuple[str, bool]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay_s)
                if receiver.fail > 0:
                    receiver.fail -= 1
                    self.send_response(receiver.status)
                    self.end_headers()
                    return
                ok = verify(receiver.secret, body, self.headers.get(SIGNATURE_HEADER, ""))
                receiver.received.append((json.loads(body)["id"], ok))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/events"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def ids(self) -> list[str]:
        return [i for i, _ in self.received]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _events(n, decision="live"):
    return [new_event("decision", decision=decision, n=i) for i in range(n)]


def test_outbox_rotates_and_resumes_from_a_cursor(tmp_path):
    box = Outbox(tmp_path, segment_bytes=600)
    events = _events(10)
    for e in events:
        box.append(e)
    assert len(box.segments()) > 2 and len({e["id"] for e in events}) == 10
    got, cursor = box.read(box.load_cursor("h"), limit=4)
    assert [e["n"] for e, _ in got] == [0, 1, 2, 3]
    box.save_cursor("h", got[-1][1])
    box.close()
    box = Outbox(tmp_path, segment_bytes=600)  # a restart resumes after event 3
    rest, _ = box.read(box.load_cursor("h"), limit=100)
    assert [e["n"] for e, _ in rest] == list(range(4, 10))
    box.save_cursor("h", rest[-1][1])
    box.prune(["h"])
    assert len(box.segments()) == 1  # delivered segments deleted, the current one kept


def test_torn_last_line_is_cut_on_reopen(tmp_path):
    box = Outbox(tmp_path)
    box.append(new_event("decision", decision="live"))
    box.close()
    with open(tmp_path / "events-00000001.jsonl", "ab") as f:
        f.write(b'{"id": "half')  # kill -9 during a write
    box = Outbox(tmp_path)
    box.append(new_event("decision", decision="spoof"))
    got, _ = box.read(box.load_cursor("h"))
    assert [e["decision"] for e, _ in got] == ["live", "spoof"]


class _Recording(Hook):
    def __init__(self, name, fail=0, only=()):
        self.name, self.fail, self.only, self.got = name, fail, only, []

    def deliver(self, event):
        if self.fail:
            self.fail -= 1
            raise HookError("receiver down")
        self.got.append(event["id"])


def test_dispatcher_retries_and_one_dead_hook_does_not_block_another(tmp_path):
    good, flaky = _Recording("good"), _Recording("flaky", fail=3, only=("spoof",))
    dead = _Recording("dead", fail=10**9)
    disp = Dispatcher(Outbox(tmp_path), [good, flaky, dead], retry_s=0.01, retry_max_s=0.02)
    disp.start()
    events = _events(3) + _events(2, "spoof")
    for e in events:
        disp.publish(e)
    deadline = time.monotonic() + 5
    while (len(good.got) < 5 or len(flaky.got) < 2) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert good.got == [e["id"] for e in events]
    assert flaky.got == [e["id"] for e in events[3:]]  # only spoof decisions, after 3 failed attempts
    assert not disp.drain(0.1)  # the dead hook still owes everything
    disp.close()
    assert disp.status()["dead"]["failures"] > 3


def test_http_hook_signs_and_classifies_errors():
    rx = Receiver(secret="k3y", fail=1, status=400)
    hook = HttpHook(HttpHookConfig(url=rx.url, secret="k3y", timeout_s=2, name="h"))
    event = new_event("decision", decision="live")
    with pytest.raises(HookError) as err:
        hook.deliver(event)
    assert err.value.permanent  # 400: refused for good
    hook.deliver(event)
    assert rx.received == [(event["id"], True)]
    rx.fail, rx.status = 1, 503
    with pytest.raises(HookError) as err:
        hook.deliver(event)
    assert not err.value.permanent  # 503: retried
    rx.close()
    with pytest.raises(HookError, match="Connection refused"):
        HttpHook(HttpHookConfig(url=f"http://127.0.0.1:{free_port()}/", timeout_s=1)).deliver(event)


def test_command_hook_gets_the_event_on_stdin(tmp_path):
    out = tmp_path / "got.json"
    script = (
        f"import sys, os; open({str(out)!r}, 'w').write(sys.stdin.read() + os.environ['FACEDEPTH_DECISION'])"
    )
    hook = CommandHook(CommandHookConfig(argv=(sys.executable, "-c", script), timeout_s=20))
    event = new_event("decision", decision="spoof")
    hook.deliver(event)
    text = out.read_text()
    assert json.loads(text[: -len("spoof")])["id"] == event["id"] and text.endswith("spoof")
    with pytest.raises(HookError, match="exited with status 3"):
        CommandHook(CommandHookConfig(argv=(sys.executable, "-c", "exit(3)"))).deliver(event)
    with pytest.raises(HookError, match="did not finish within 0.2 s"):
        CommandHook(CommandHookConfig(argv=("sleep", "5"), timeout_s=0.2)).deliver(event)
    with pytest.raises(HookError, match="cannot run /no/such/tool"):
        CommandHook(CommandHookConfig(argv=("/no/such/tool",))).deliver(event)


def test_gpio_hook_pulses_a_fake_sysfs_line(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEDEPTH_ROOT", str(tmp_path))
    gpio = tmp_path / "sys/class/gpio"
    (gpio / "gpio17").mkdir(parents=True)  # as if the kernel created it on export
    writes = []
    hook = GpioHook(GpioHookConfig(pin=17, pulse_s=0.05))
    real_write = hook._write
    monkeypatch.setattr(hook, "_write", lambda on: (writes.append(on), real_write(on)))
    assert hook.wants({"decision": "live"}) and not hook.wants({"decision": "spoof"})
    hook.deliver(new_event("decision", decision="live"))
    assert writes == [False, True, False]
    assert (gpio / "gpio17/direction").read_text() == "out" and (gpio / "gpio17/value").read_text() == "0"
    # a grant delivered late (relay down for a while, a restart with a full outbox) never opens the door
    stale = new_event("decision", decision="live")
    stale["unix_time"] -= 60
    for event in (stale, {**stale, "unix_time": "soon"}):
        with pytest.raises(HookError, match="not acted on, the door stays shut") as e:
            hook.deliver(event)
        assert e.value.permanent
    assert writes == [False, True, False]


@pytest.mark.skipif(
    shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"),
    reason="needs Debian's mosquitto (apt-get install mosquitto)",
)
def test_mqtt_hook_publishes_qos1_and_availability(tmp_path):
    import paho.mqtt.client as mqtt

    from firmware_app.hooks.mqtt import MqttHook

    port = free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        hook = MqttHook(
            MqttHookConfig(port=port, topic="t/events", availability_topic="t/status", timeout_s=3)
        )
        event = new_event("decision", decision="live")
        hook.deliver(event)
        got = []
        sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        sub.on_message = lambda c, u, m: got.append((m.topic, m.payload.decode(), m.retain))
        sub.on_connect = lambda c, u, f, rc, p: c.subscribe("t/#", qos=1)
        sub.connect("127.0.0.1", port)
        sub.loop_start()

        def wait_for(topic, test):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if any(t == topic and test(p) for t, p, _ in got):
                    return True
                time.sleep(0.02)
            return False

        assert wait_for("t/status", lambda p: p == "online")  # retained, so seen by a later subscriber
        time.sleep(0.2)  # the subscription is active
        hook.deliver(new_event("decision", decision="spoof"))
        assert wait_for("t/events", lambda p: json.loads(p)["decision"] == "spoof")
        hook.close()
        assert wait_for("t/status", lambda p: p == "offline")
        sub.loop_stop()
        sub.disconnect()
    finally:
        broker.terminate()
        broker.wait(5)
    with pytest.raises(HookError, match="cannot connect"):
        MqttHook(MqttHookConfig(port=port, timeout_s=1)).deliver(event)
