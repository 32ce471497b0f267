"""The OpenAI-compatible server (chapter 12) as a real uvicorn process on a free loopback port: the official `openai`
client (streaming and not, usage), raw HTTP for the event-stream framing and the error cases, concurrent requests
that must each get exactly the tokens of `generate`, and a disconnecting client that must free its slot."""
import json, threading, time
import httpx
import pytest
import torch
from conftest import ROOT

openai = pytest.importorskip("openai")
from minillm.config import MiniLLMConfig
from minillm.eval import chat_prompt_ids, load_chat_model, stop_token_ids, stream_reply
from minillm.model import MiniLLMForCausalLM
from minillm.serve import free_port, launch_server, main, parse_sse
from minillm.tokenizer import load_tokenizer

KEY, NAME, CTX = "sk-test-123", "tiny", 256

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    "A tiny random checkpoint (large weights: greedy choices far from ties), served once for the whole module."
    d = tmp_path_factory.mktemp("tiny_ckpt")
    tok = load_tokenizer()
    torch.manual_seed(0)
    m = MiniLLMForCausalLM(MiniLLMConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=len(tok),
                                         max_seq_len=CTX))
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0, 0.3) if p.dim() > 1 else None
    m.save_pretrained(d)
    port = free_port()
    log = open(d / "server.log", "w")
    # exactness is checked in fp32: in bf16 (the default on a CPU with native bf16) a row's rounding depends on
    # the rows it shares a batch with, so a batched greedy reply may part from the reply served alone
    proc = launch_server(["--ckpt", str(d), "--device", "cpu", "--dtype", "float32", "--api-key", KEY, "--model_name",
                          NAME, "--max_tokens", "24"],
                         port, log=log)
    model, tok = load_chat_model(str(d), device="cpu", dtype="float32")
    base = f"http://127.0.0.1:{port}"
    yield dict(base=base, model=model, tok=tok, proc=proc, log=d / "server.log",
               client=openai.OpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0, timeout=60))
    proc.terminate(); proc.wait(10); log.close()

H = {"Authorization": f"Bearer {KEY}"}
MSGS = [{"role": "user", "content": "What is the capital of the town by the sea?"}]

def reference(s, messages=MSGS, max_tokens=24, **kw) -> tuple[str, dict]:
    "The model's own reply to `messages` served alone (chapter 11's stream_reply): (text, info)."
    info = {}
    text = "".join(stream_reply(s["model"], s["tok"], chat_prompt_ids(s["tok"], messages), max_new_tokens=max_tokens,
                                info=info, **kw))
    return text, info

def health(s): return httpx.get(s["base"] + "/health").json()

def test_models_and_health(served):
    ids = [m.id for m in served["client"].models.list().data]
    assert ids == [NAME]
    h = health(served)
    assert h["status"] == "ok" and h["model"] == NAME

def test_chat_non_streaming(served):
    r = served["client"].chat.completions.create(model=NAME, messages=MSGS, max_tokens=12, temperature=0)
    text, info = reference(served, max_tokens=12)
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == text
    assert r.choices[0].finish_reason == info["finish_reason"]
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (info["prompt_tokens"], info["completion_tokens"])
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

def test_chat_streaming_with_usage(served):
    stream = served["client"].chat.completions.create(model=NAME, messages=MSGS, max_tokens=12, temperature=0,
                                                      stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text, info = reference(served, max_tokens=12)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [info["finish_reason"]]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == info["completion_tokens"]
    assert all(c.usage is None for c in chunks[:-1])
    # without include_usage: no usage chunk
    plain = list(served["client"].chat.completions.create(model=NAME, messages=MSGS, max_tokens=4, temperature=0,
                                                          stream=True))
    assert all(c.choices and c.usage is None for c in plain)

def test_sse_framing_raw(served):
    with httpx.stream("POST", served["base"] + "/v1/chat/completions", headers=H, timeout=60,
                      json={"messages": MSGS, "max_tokens": 5, "temperature": 0, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    assert raw.endswith("data: [DONE]\n\n")
    events = raw.split("\n\n")[:-1]
    assert all(e.startswith("data: ") and "\n" not in e for e in events)      # one data line per event
    objs = list(parse_sse([raw]))
    assert objs[-1] == "[DONE]" and all(o["object"] == "chat.completion.chunk" for o in objs[:-1])

def test_completions(served):
    c = served["client"]
    r = c.completions.create(model=NAME, prompt="Once upon a time", max_tokens=10, temperature=0)
    tok = served["tok"]
    info = {}
    ids = tok("Once upon a time", add_special_tokens=False)["input_ids"]
    ref = "".join(stream_reply(served["model"], tok, ids, max_new_tokens=10, info=info))
    assert (r.object == "text_completion" and r.choices[0].text == ref
            and r.usage.completion_tokens == info["completion_tokens"])
    streamed = list(c.completions.create(model=NAME, prompt="Once upon a time", max_tokens=10, temperature=0,
                                         stream=True))
    assert "".join(x.choices[0].text for x in streamed) == ref

def test_stop_sequence(served):
    full, _ = reference(served, max_tokens=24)
    stop = full[len(full) // 2: len(full) // 2 + 3]
    assert stop.strip(), full
    want = full[:full.find(stop)]
    r = served["client"].chat.completions.create(model=NAME, messages=MSGS, max_tokens=24, temperature=0, stop=[stop])
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == (want, "stop")
    s = list(served["client"].chat.completions.create(model=NAME, messages=MSGS, max_tokens=24, temperature=0,
                                                      stop=stop, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in s) == want

def test_seeded_sampling(served):
    kw = dict(model=NAME, messages=MSGS, max_tokens=16, temperature=0.9, top_p=0.9)
    a = served["client"].chat.completions.create(seed=3, **kw).choices[0].message.content
    b = served["client"].chat.completions.create(seed=3, **kw).choices[0].message.content
    ref, _ = reference(served, max_tokens=16, temperature=0.9, top_p=0.9, seed=3)
    assert a == b == ref

def test_concurrent_requests_are_batched_and_exact(served):
    ("Requests of different lengths, at once, streaming and not: each gets exactly its own tokens, "
     "and they shared forwards.")
    convs = [[{"role": "user", "content": "x" * n}] for n in (1, 7, 20, 3, 45, 12)]
    refs = [reference(served, c, max_tokens=40)[0] for c in convs]
    out = [None] * len(convs)
    def run(i):
        kw = dict(model=NAME, messages=convs[i], max_tokens=40, temperature=0)
        if i % 2: out[i] = served["client"].chat.completions.create(**kw).choices[0].message.content
        else:
            out[i] = "".join(c.choices[0].delta.content or ""
                             for c in served["client"].chat.completions.create(stream=True, **kw))
    before = health(served)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(convs))]
    for t in threads: t.start()
    for t in threads: t.join(120)
    after = health(served)
    assert out == refs
    steps, rows = after["decode_steps"] - before["decode_steps"], after["decode_rows"] - before["decode_rows"]
    assert rows > 1.5 * steps, (rows, steps)            # several requests per forward pass on average

def test_disconnect_frees_the_slot(served):
    before = health(served)
    with httpx.stream("POST", served["base"] + "/v1/chat/completions", headers=H, timeout=60,
                      json={"messages": MSGS, "max_tokens": 200, "temperature": 0, "ignore_eos": True,
                            "stream": True}) as r:
        it = r.iter_lines()
        got = [next(it) for _ in range(6)]                # a few events, then hang up
        assert health(served)["active"] == 1
    t0 = time.time()
    while health(served)["active"] and time.time() - t0 < 60: time.sleep(0.02)   # a cap on waiting, not a speed test
    after = health(served)
    assert after["active"] == 0
    assert after["decode_rows"] - before["decode_rows"] < 150     # freed at once: it did not run on to its 200 tokens
    assert served["client"].chat.completions.create(model=NAME, messages=MSGS,
                                                    max_tokens=3).choices[0].message.content is not None

BAD = [  # (what, method, path, body, headers, status, code)
    ("malformed JSON", "POST", "/v1/chat/completions", b'{"messages": [', H, 400, "invalid_json"),
    ("empty body", "POST", "/v1/chat/completions", b"", H, 400, "invalid_json"),
    ("wrong type", "POST", "/v1/chat/completions", {"messages": MSGS, "max_tokens": "5"}, H, 422, "invalid_type"),
    ("messages not a list", "POST", "/v1/chat/completions", {"messages": "hi"}, H, 422, "invalid_type"),
    ("bad role", "POST", "/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, H, 422,
     "invalid_type"),
    ("missing messages", "POST", "/v1/chat/completions", {"model": NAME}, H, 422, "invalid_type"),
    ("unknown model", "POST", "/v1/chat/completions", {"model": "gpt-9", "messages": MSGS}, H, 404, "model_not_found"),
    ("empty messages", "POST", "/v1/chat/completions", {"messages": []}, H, 400, "invalid_value"),
    ("max_tokens 0", "POST", "/v1/chat/completions", {"messages": MSGS, "max_tokens": 0}, H, 400, "invalid_value"),
    ("max_tokens -3", "POST", "/v1/completions", {"prompt": "a", "max_tokens": -3}, H, 400, "invalid_value"),
    ("temperature 5", "POST", "/v1/chat/completions", {"messages": MSGS, "temperature": 5}, H, 400, "invalid_value"),
    ("n 100", "POST", "/v1/chat/completions", {"messages": MSGS, "n": 100}, H, 400, "invalid_value"),
    ("prompt too long", "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "word " * 400}]}, H,
     400, "context_length_exceeded"),
    ("token prompt too long", "POST", "/v1/completions", {"prompt": list(range(10, 10 + CTX))}, H, 400,
     "context_length_exceeded"),
    ("no key", "POST", "/v1/chat/completions", {"messages": MSGS}, {}, 401, "invalid_api_key"),
    ("wrong key", "GET", "/v1/models", None, {"Authorization": "Bearer nope"}, 401, "invalid_api_key"),
    ("unknown route", "GET", "/v1/nothing", None, H, 404, "not_found"),
]

@pytest.mark.parametrize("what,method,path,body,headers,status,code", BAD, ids=[b[0] for b in BAD])
def test_errors_in_openai_shape(served, what, method, path, body, headers, status, code):
    kw = {"content": body} if isinstance(body, bytes) else ({"json": body} if body is not None else {})
    r = httpx.request(method, served["base"] + path, headers=headers, timeout=30, **kw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert sorted(err) == ["code", "message", "param", "type"] and err["code"] == code and err["message"]

def test_errors_through_the_client_and_still_serving(served):
    c = served["client"]
    with pytest.raises(openai.NotFoundError): c.chat.completions.create(model="gpt-9", messages=MSGS)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=served["base"] + "/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError): c.chat.completions.create(model=NAME, messages=[])
    assert served["proc"].poll() is None
    assert c.chat.completions.create(model=NAME, messages=MSGS, max_tokens=2).usage.completion_tokens >= 1

def test_cli_reports_a_missing_checkpoint(tmp_path, capsys):
    assert main(["--ckpt", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err

def test_serves_a_lora_adapter(served, tmp_path):
    "--lora_path: the served model is base + adapter (merged), named after it, and answers like the merged model."
    from minillm.lora import apply_lora, lora_layers, save_lora
    base_dir = tmp_path / "base"
    tok = served["tok"]
    torch.manual_seed(1)
    m = MiniLLMForCausalLM(MiniLLMConfig(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=len(tok),
                                         max_seq_len=CTX))
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0, 0.3) if p.dim() > 1 else None
    m.save_pretrained(base_dir)
    apply_lora(m, r=4)
    with torch.no_grad():
        for l in lora_layers(m): l.lora_B.weight.normal_(0, 0.5)        # a visible change
    save_lora(m, tmp_path / "adapter")
    merged, _ = load_chat_model(str(base_dir), lora_path=str(tmp_path / "adapter"), device="cpu")
    plain, _ = load_chat_model(str(base_dir), device="cpu")
    ids = chat_prompt_ids(tok, MSGS)
    want = "".join(stream_reply(merged, tok, ids, max_new_tokens=12))
    assert want != "".join(stream_reply(plain, tok, ids, max_new_tokens=12))   # the adapter matters
    port = free_port()
    proc = launch_server(["--ckpt", str(base_dir), "--lora_path", str(tmp_path / "adapter"), "--device", "cpu"], port)
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=60)
        name = c.models.list().data[0].id
        assert name == "base+adapter"
        assert c.chat.completions.create(model=name, messages=MSGS, max_tokens=12,
                                         temperature=0).choices[0].message.content == want
    finally:
        proc.terminate(); proc.wait(10)

def test_serves_a_transformers_folder(served, tmp_path):
    "--ckpt on a transformers Llama folder (chapter 13's converter): same weights, same greedy answer."
    convert = pytest.importorskip("minillm.convert")
    out = tmp_path / "hf"
    convert.to_transformers(served["model"], out, tokenizer=served["tok"])
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"
    want, _ = reference(served, max_tokens=12)
    port = free_port()
    proc = launch_server(["--ckpt", str(out), "--device", "cpu", "--model_name", "llama-tiny"], port)
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=60)
        assert c.chat.completions.create(model="llama-tiny", messages=MSGS, max_tokens=12,
                                         temperature=0).choices[0].message.content == want
    finally:
        proc.terminate(); proc.wait(10)
