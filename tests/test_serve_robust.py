"""The server under hostile and unusual use (issue 18): requests that must fail alone while healthy streams beside
them complete, the front door (body limit, prompt length), chunked prefill, queue limits and timeouts, metrics,
the fields of OpenAI's API (honoured or refused by name), log-probabilities, n > 1, and the OpenAPI schema
fuzzed by schemathesis. One small random checkpoint, served by a real uvicorn process; the limits that need a
slow model run an in-process app in a uvicorn thread."""
import json, socket, threading, time
import httpx
import pytest
import torch
from minillm.config import MiniLLMConfig
from minillm.eval import chat_prompt_ids, load_chat_model, stream_reply
from minillm.model import MiniLLMForCausalLM
from minillm.serve import (BatchEngine, GenRequest, create_app, free_port, launch_server, load_served_model, parse_sse,
                           parser)
from minillm.tokenizer import load_tokenizer
from minillm.perf import resolve_dtype

KEY, NAME, CTX = "sk-robust", "tiny", 512
H = {"Authorization": f"Bearer {KEY}"}
MSGS = [{"role": "user", "content": "What is the capital of the town by the sea?"}]

def tiny_model(tok, ctx=CTX, seed=0):
    torch.manual_seed(seed)
    m = MiniLLMForCausalLM(MiniLLMConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=len(tok),
                                         max_seq_len=ctx))
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0, 0.3) if p.dim() > 1 else None
    return m.eval()

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("robust_ckpt")
    tok = load_tokenizer()
    tiny_model(tok).save_pretrained(d)
    tok.save_pretrained(str(d))
    port = free_port()
    log = open(d / "server.log", "w")
    # fp32: in bf16 a row's rounding depends on the rows batched with it (see test_serve.py)
    proc = launch_server(["--ckpt", str(d), "--device", "cpu", "--dtype", "float32", "--api-key", KEY, "--model_name",
                          NAME, "--max_tokens", "16", "--max_body_bytes", "1000000"], port, log=log)
    model, tok = load_chat_model(str(d), device="cpu", dtype="float32")
    yield dict(base=f"http://127.0.0.1:{port}", port=port, model=model, tok=tok, proc=proc, log=d / "server.log")
    proc.terminate(); proc.wait(10); log.close()

def reference(s, messages=MSGS, max_tokens=24, **kw) -> str:
    return "".join(stream_reply(s["model"], s["tok"], chat_prompt_ids(s["tok"], messages), max_new_tokens=max_tokens,
                                **kw))

def stream_events(base, body, timeout=120):
    with httpx.stream("POST", base + "/v1/chat/completions", headers=H, json=body | {"stream": True},
                      timeout=timeout) as r:
        assert r.status_code == 200, r.read()
        return list(parse_sse(r.iter_text()))

def stream_text(evs):
    return "".join(e["choices"][0]["delta"].get("content", "") for e in evs if isinstance(e, dict) and e.get("choices"))

# ---- 1, 2, 3: a hostile request fails alone; healthy streams beside it complete with exactly their tokens ----
HUGE = "word " * 180_000                                   # 0.9 MB: under the body limit, far over the context
HOSTILE = [  # (what, path, body (dict, or bytes), acceptable statuses)
    ("temperature 1e-40", "/v1/chat/completions", {"messages": MSGS, "temperature": 1e-40, "max_tokens": 20}, {200}),
    ("top_p 1e-46", "/v1/chat/completions", {"messages": MSGS, "temperature": 1.0, "top_p": 1e-46, "max_tokens": 20},
     {200}),
    ("top_p 1e-46 streamed", "/v1/chat/completions",
     {"messages": MSGS, "temperature": 1.0, "top_p": 1e-46, "stream": True}, {200}),
    ("seed 2**64", "/v1/chat/completions", {"messages": MSGS, "temperature": 1, "seed": 2 ** 64}, {400}),
    ("seed 2**64 streamed", "/v1/chat/completions",
     {"messages": MSGS, "temperature": 1, "seed": 2 ** 64, "stream": True}, {400}),
    ("seed -2**63-1", "/v1/completions", {"prompt": "a", "temperature": 1, "seed": -2 ** 63 - 1}, {400}),
    ("huge prompt", "/v1/chat/completions", {"messages": [{"role": "user", "content": HUGE}]}, {400}),
    ("huge body", "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "' + b"x" * 3_000_000 + b'"}]}',
     {413}),
    ("bad logit_bias", "/v1/chat/completions", {"messages": MSGS, "logit_bias": {"99999999": 5}}, {400}),
]

@pytest.mark.parametrize("what,path,body,ok", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_request_fails_alone(served, what, path, body, ok):
    convs = [[{"role": "user", "content": "x" * n}] for n in (3, 11, 6)]
    if "healthy_refs" not in served: served["healthy_refs"] = [reference(served, c, max_tokens=40) for c in convs]
    refs = served["healthy_refs"]
    got, started = [None] * 3, [threading.Event() for _ in range(3)]
    def healthy(i):
        evs = []
        with httpx.stream("POST", served["base"] + "/v1/chat/completions", headers=H, timeout=120,
                          json={"messages": convs[i], "max_tokens": 40, "temperature": 0, "stream": True}) as r:
            for e in parse_sse(r.iter_text()):
                evs.append(e); started[i].set()
        got[i] = evs
    threads = [threading.Thread(target=healthy, args=(i,)) for i in range(3)]
    for t in threads: t.start()
    for e in started: assert e.wait(60)
    kw = ({"content": body, "headers": H | {"Content-Type": "application/json"}} if isinstance(body, bytes)
          else {"json": body, "headers": H})
    r = httpx.post(served["base"] + path, timeout=120, **kw)
    for t in threads: t.join(120)
    assert r.status_code in ok, r.text
    if r.status_code != 200: assert sorted(r.json()["error"]) == ["code", "message", "param", "type"]
    for evs, ref in zip(got, refs):                          # every healthy stream: all its tokens, then [DONE]
        assert evs[-1] == "[DONE]" and not any(isinstance(e, dict) and "error" in e for e in evs)
        assert stream_text(evs) == ref
    assert served["proc"].poll() is None

def test_seed_range_is_64_bits(served):
    for seed in (2 ** 64 - 1, -2 ** 63):                       # the extremes torch accepts are fine
        r = httpx.post(served["base"] + "/v1/completions", headers=H, timeout=60,
                       json={"prompt": "a", "temperature": 1, "seed": seed, "max_tokens": 3})
        assert r.status_code == 200, r.text
    r = httpx.post(served["base"] + "/v1/chat/completions", headers=H, timeout=60,
                   json={"messages": MSGS, "seed": 2 ** 64, "stream": True})
    assert r.status_code == 400 and r.json()["error"]["param"] == "seed"     # before any stream starts

def test_body_limit_refuses_before_reading(served):
    "A declared 20 MB body is refused with 413 while the client has sent only its first kilobyte."
    with socket.create_connection(("127.0.0.1", served["port"]), timeout=30) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer " + KEY.encode() + b"\r\nContent-Length: 20000000\r\n\r\n" + b'{"messages": "'
                  + b"x" * 1024)
        head = b""
        while b"request_too_large" not in head:                # the status line and the JSON body, however split
            piece = s.recv(65536)
            if not piece: break
            head += piece
        head = head.decode(errors="replace")
    assert head.startswith("HTTP/1.1 413"), head[:200]
    assert "request_too_large" in head
    assert httpx.get(served["base"] + "/health").status_code == 200

def test_prompt_must_fit_with_max_tokens(served):
    ids = list(range(10, 10 + CTX - 10))
    r = httpx.post(served["base"] + "/v1/completions", headers=H, timeout=60, json={"prompt": ids, "max_tokens": 11})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert "maximum context length is 512 tokens" in r.json()["error"]["message"]
    r = httpx.post(served["base"] + "/v1/completions", headers=H, timeout=60, json={"prompt": ids, "max_tokens": 10})
    assert r.status_code == 200
    # no max_tokens: clipped
    r = httpx.post(served["base"] + "/v1/completions", headers=H, timeout=60, json={"prompt": ids})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 10

# ---- 4: chunked prefill ----
def test_chunked_prefill_interleaves_with_decode():
    "The stream receives tokens while a long prompt is prefilled; the long prompt's greedy tokens are still exact."
    tok = load_tokenizer()
    m = tiny_model(tok, ctx=2048, seed=3)
    long_prompt = torch.randint(10, len(tok), (1500,), generator=torch.Generator().manual_seed(0)).tolist()
    eng = BatchEngine(m, max_batch=4, prefill_chunk=64).start()
    try:
        log = []
        stream = eng.submit(GenRequest(list(range(20, 30)), max_tokens=1000,
                                       on_event=lambda ev: log.append(("s", ev[0]))))
        while log.count(("s", "token")) < 3: time.sleep(0.005)
        log.append(("long", "submitted"))
        done = threading.Event()
        out = []
        def on_long(ev):
            log.append(("long", ev[0]))
            if ev[0] == "token": out.append(ev[1])
            if ev[0] == "done": done.set()
        eng.submit(GenRequest(long_prompt, max_tokens=6, on_event=on_long))
        assert done.wait(300)
        stream.cancel()
        a, b = log.index(("long", "submitted")), log.index(("long", "token"))
        assert log[a:b].count(("s", "token")) >= 15          # 1500 / 64 = 24 chunks, a decode step between each
        assert out == m.generate(torch.tensor([long_prompt]), max_new_tokens=6)[0, 1500:].tolist()
    finally: eng.shutdown()

# ---- 5: the published schema ----
def test_openapi_declares_bodies_and_real_errors(served):
    s = httpx.get(served["base"] + "/openapi.json").json()
    for path, model in (("/v1/chat/completions", "ChatRequest"), ("/v1/completions", "CompletionRequest")):
        op = s["paths"][path]["post"]
        assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"] == f"#/components/schemas/{model}"
        assert model in s["components"]["schemas"] and {"400", "413", "503"} <= set(op["responses"])
    resp = s["paths"]["/v1/models/{name}"]["get"]["responses"]
    assert "422" not in resp and "404" in resp
    assert "messages" in s["components"]["schemas"]["ChatRequest"]["properties"]

def test_schemathesis_no_server_errors(served):
    ("Bodies generated from the published schema (bounded examples per operation): never a 5xx, "
     "errors in OpenAI's shape.")
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    schema = schemathesis.openapi.from_url(served["base"] + "/openapi.json")
    ops = [r.ok() for r in schema.get_all_operations()]
    assert ({f"{o.method.upper()} {o.path}" for o in ops}
            >= {"POST /v1/chat/completions", "POST /v1/completions", "GET /v1/models/{name}"})
    for op in ops:
        @given(case=op.as_strategy())
        @settings(max_examples=30 if op.method.lower() == "post" else 5, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            r = case.call(base_url=served["base"], headers=H, timeout=60)
            assert r.status_code < 500, (case.method, case.path, case.body, r.status_code, r.text[:500])
            ct = r.headers.get("content-type") or [""]
            if r.status_code >= 400 and (ct[0] if isinstance(ct, list) else ct).startswith("application/json"):
                assert sorted(r.json()["error"]) == ["code", "message", "param", "type"]
        check()

# ---- 6: every field honoured or refused by name; clean 422 paths ----
REFUSED = [("best_of", "/v1/completions", {"prompt": "a", "best_of": 2}),
           ("response_format", "/v1/chat/completions", {"messages": MSGS, "response_format": {"type": "json_object"}}),
           ("tools", "/v1/chat/completions",
            {"messages": MSGS, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"}),
           ("tool_choice", "/v1/chat/completions", {"messages": MSGS, "tool_choice": "required"}),
           ("echo", "/v1/completions", {"prompt": "a", "echo": True, "logprobs": 1}),
           ("suffix", "/v1/completions", {"prompt": "a", "suffix": "b"}),
           ("reasoning_effort", "/v1/chat/completions", {"messages": MSGS, "reasoning_effort": "high"}),
           ("min_p", "/v1/chat/completions", {"messages": MSGS, "min_p": 0.1})]

@pytest.mark.parametrize("field,path,body", REFUSED, ids=[r[0] for r in REFUSED])
def test_unsupported_fields_are_refused_by_name(served, field, path, body):
    r = httpx.post(served["base"] + path, headers=H, json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == field and field in r.json()["error"]["message"]

def test_422_paths_are_field_paths(served):
    r = httpx.post(served["base"] + "/v1/chat/completions", headers=H, timeout=30,
                   json={"messages": [{"role": "user", "content": 5}]})
    assert r.status_code == 422 and r.json()["error"]["param"] == "messages.0.content"
    assert "str" not in r.json()["error"]["param"].split(".")

def test_logit_bias_repetition_penalty_echo_are_honoured(served):
    tok = served["tok"]
    t = tok("sea", add_special_tokens=False)["input_ids"][0]
    r = httpx.post(served["base"] + "/v1/completions", headers=H, timeout=60,
                   json={"prompt": "Once upon", "max_tokens": 5, "temperature": 0, "logit_bias": {str(t): 100},
                         "ignore_eos": True}).json()
    assert r["choices"][0]["text"] == tok.decode([t] * 5)
    ids = tok("a ", add_special_tokens=False)["input_ids"]          # a prompt on which this model repeats itself
    want = "".join(stream_reply(served["model"], tok, ids, max_new_tokens=24, repetition_penalty=1.5))
    assert want != "".join(stream_reply(served["model"], tok, ids, max_new_tokens=24))      # the penalty matters here
    r = httpx.post(served["base"] + "/v1/completions", headers=H, timeout=60,
                   json={"prompt": "a ", "max_tokens": 24, "temperature": 0, "repetition_penalty": 1.5}).json()
    assert r["choices"][0]["text"] == want
    r = httpx.post(served["base"] + "/v1/completions", headers=H, timeout=60,
                   json={"prompt": "Once upon", "max_tokens": 4, "temperature": 0, "echo": True}).json()
    assert r["choices"][0]["text"].startswith("Once upon")

def _ref_logprobs(s, prompt_ids, gen_ids):
    with torch.no_grad(): lp = s["model"](torch.tensor([prompt_ids + gen_ids])).logits[0].float().log_softmax(-1)
    return [lp[len(prompt_ids) - 1 + k] for k in range(len(gen_ids))]

def test_chat_logprobs_match_the_model(served):
    tok = served["tok"]
    for stream in (False, True):
        body = {"messages": MSGS, "max_tokens": 8, "temperature": 0, "logprobs": True, "top_logprobs": 4,
                "ignore_eos": True}
        if stream:
            evs = stream_events(served["base"], body)
            content = [x for e in evs if isinstance(e, dict) and e["choices"] and e["choices"][0]["logprobs"]
                       for x in e["choices"][0]["logprobs"]["content"]]
        else:
            content = httpx.post(served["base"] + "/v1/chat/completions", headers=H, json=body,
                                 timeout=60).json()["choices"][0]["logprobs"]["content"]
        ids = chat_prompt_ids(tok, MSGS)
        gen = served["model"].generate(torch.tensor([ids]), max_new_tokens=8)[0, len(ids):].tolist()
        assert len(content) == 8
        for e, t, ref in zip(content, gen, _ref_logprobs(served, ids, gen)):
            assert e["token"] == tok.decode([t]) and abs(e["logprob"] - float(ref[t])) < 1e-4
            assert [x["token"] for x in e["top_logprobs"]] == [tok.decode([i]) for i in ref.topk(4).indices.tolist()]
            assert e["bytes"] == list(e["token"].encode())

def test_completion_logprobs_match_the_model(served):
    tok = served["tok"]
    r = httpx.post(served["base"] + "/v1/completions", headers=H, timeout=60,
                   json={"prompt": "Once upon a time", "max_tokens": 6, "temperature": 0, "logprobs": 2,
                         "ignore_eos": True}).json()
    lp = r["choices"][0]["logprobs"]
    ids = tok("Once upon a time", add_special_tokens=False)["input_ids"]
    gen = served["model"].generate(torch.tensor([ids]), max_new_tokens=6)[0, len(ids):].tolist()
    assert lp["tokens"] == [tok.decode([t]) for t in gen]
    for v, t, ref in zip(lp["token_logprobs"], gen, _ref_logprobs(served, ids, gen)):
        assert abs(v - float(ref[t])) < 1e-4
    assert all(len(d) <= 2 for d in lp["top_logprobs"]) and lp["text_offset"][0] == 0

def test_n_choices(served):
    ref = reference(served, max_tokens=12)
    r = httpx.post(served["base"] + "/v1/chat/completions", headers=H, timeout=60,
                   json={"messages": MSGS, "max_tokens": 12, "temperature": 0, "n": 3}).json()
    assert [c["index"] for c in r["choices"]] == [0, 1, 2] and all(c["message"]["content"] == ref for c in r["choices"])
    kw = {"messages": MSGS, "max_tokens": 12, "temperature": 0.9, "seed": 5}
    one = httpx.post(served["base"] + "/v1/chat/completions", headers=H, timeout=60,
                     json=kw).json()["choices"][0]["message"]["content"]
    evs = stream_events(served["base"], kw | {"n": 2, "stream_options": {"include_usage": True}})
    per = {i: "".join(e["choices"][0]["delta"].get("content", "") for e in evs
                      if isinstance(e, dict) and e["choices"] and e["choices"][0]["index"] == i) for i in (0, 1)}
    assert per[0] == one == reference(served, max_tokens=12, temperature=0.9, seed=5)
    assert per[1] == reference(served, max_tokens=12, temperature=0.9, seed=6)
    assert evs[-2]["choices"] == [] and 0 < evs[-2]["usage"]["completion_tokens"] <= 24

# ---- 7: queue limit, timeout, metrics (a slow model, in-process, so that the order of events is certain) ----
class Slow:
    "A model whose every forward takes at least `delay` seconds."
    def __init__(self, m, delay): self.m, self.delay, self.config, self.device = m, delay, m.config, m.device
    def eval(self): return self
    def __call__(self, *a, **kw): time.sleep(self.delay); return self.m(*a, **kw)

@pytest.fixture
def slow_server():
    import uvicorn
    servers = []
    def start(**kw):
        tok = load_tokenizer()
        m = tiny_model(tok)
        app = create_app(m, tok, model_name=NAME, engine=BatchEngine(Slow(m, 0.02), max_batch=1), **kw)
        port = free_port()
        srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        threading.Thread(target=srv.run, daemon=True).start()
        while not srv.started: time.sleep(0.02)
        servers.append(srv)
        return f"http://127.0.0.1:{port}"
    yield start
    for s in servers: s.should_exit = True

def _health(base): return httpx.get(base + "/health").json()

def test_queue_full_is_503_with_retry_after(slow_server):
    base = slow_server(max_queue=1)
    body = {"messages": MSGS, "max_tokens": 300, "temperature": 0, "ignore_eos": True}
    with httpx.stream("POST", base + "/v1/chat/completions", json=body | {"stream": True}, timeout=60) as a:
        it = a.iter_lines(); next(it)                                    # A runs (the one batch slot)
        res = {}
        tb = threading.Thread(target=lambda: res.update(b=httpx.post(base + "/v1/chat/completions",
                                                                     json=body | {"max_tokens": 3}, timeout=60)))
        tb.start()
        while _health(base)["queued"] < 1: time.sleep(0.01)             # B waits (the one queue place)
        c = httpx.post(base + "/v1/chat/completions", json=body, timeout=60)
        assert (c.status_code == 503 and c.headers["retry-after"] == "1"
                and c.json()["error"]["code"] == "server_overloaded")
    tb.join(60)                                                          # A hung up: B gets its turn
    assert res["b"].status_code == 200
    m = httpx.get(base + "/metrics").text
    assert 'minillm:request_rejected_total{model_name="tiny",reason="queue_full"} 1' in m

def test_request_timeout(slow_server):
    base = slow_server(request_timeout=0.5)
    body = {"messages": MSGS, "max_tokens": 200, "temperature": 0, "ignore_eos": True}    # ≥ 4 s of forwards
    r = httpx.post(base + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
    evs = stream_events(base, body)
    assert evs[-1] == "[DONE]" and evs[-2]["error"]["code"] == "timeout"
    t0 = time.time()
    while _health(base)["active"] and time.time() - t0 < 30: time.sleep(0.02)
    assert _health(base)["active"] == 0                                   # the timed-out rows were freed

def test_metrics_prometheus_format(served):
    httpx.post(served["base"] + "/v1/chat/completions", headers=H, json={"messages": MSGS, "max_tokens": 4}, timeout=60)
    text = httpx.get(served["base"] + "/metrics").text
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:prompt_tokens_total",
                 "vllm:generation_tokens_total", "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds",
                 "vllm:e2e_request_latency_seconds"):
        assert f"# TYPE {name} " in text
    gen = [l for l in text.splitlines() if l.startswith("vllm:generation_tokens_total{")]
    assert float(gen[0].rsplit(" ", 1)[1]) > 0
    assert 'vllm:time_to_first_token_seconds_bucket{model_name="tiny",le="+Inf"}' in text

# ---- the original command: --tokenizer_dir alone, --dim not given ----
def test_cli_finds_the_only_checkpoint(tmp_path):
    tok = load_tokenizer()
    tiny_model(tok).save_pretrained(tmp_path / "full_sft_64")
    tok.save_pretrained(str(tmp_path / "tok"))
    model, tok2, name = load_served_model(
        parser().parse_args(["--out_dir", str(tmp_path), "--tokenizer_dir", str(tmp_path / "tok"), "--device", "cpu"]))
    assert name == "full_sft_64" and model.config.dim == 64 and len(tok2) == len(tok)
    # --dtype auto: bf16 on a CPU with native bf16, else fp32
    assert next(model.parameters()).dtype == resolve_dtype("auto", "cpu", log=False)
