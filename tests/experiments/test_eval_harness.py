"""The lm-evaluation-harness adapter (``experiments.eval.harness``) and the downstream task definitions, on small
fixtures in each task's upstream format (offline)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from experiments.config import SuiteError
from experiments.eval import downstream
from experiments.eval.local_data import FIXTURES, cloze_passages
from experiments.eval.perplexity import Window, rolling_windows, score_windows
from tasks.lm.tokenizers import load_tokenizer
from xlstm import build

lm_eval = pytest.importorskip("lm_eval")
from experiments.eval.harness import SuiteLM  # noqa: E402  (needs lm_eval)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build("llama", embedding_dim=32, num_blocks=1, num_heads=2, vocab_size=320, context_length=512).eval()
    return model, load_tokenizer("bytes")


def hand_loglikelihood(model, tokens: list[int], n_continuation: int) -> float:
    """log p(last n tokens | the ones before) from one forward pass over the whole sequence."""
    logprobs = F.log_softmax(model(torch.tensor([tokens])).double(), -1)[0]
    return sum(logprobs[i - 1, tokens[i]].item() for i in range(len(tokens) - n_continuation, len(tokens)))


def test_one_task_loglikelihood_is_the_hand_computation_from_the_logits(tiny):
    model, tok = tiny
    lm = SuiteLM(model, tok, max_length=512, batch_size=3)
    tasks = downstream.build_tasks(["piqa"], FIXTURES)
    out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks.values()), log_samples=True, bootstrap_iters=0)
    sample = out["samples"]["piqa"][0]
    doc = json.loads((FIXTURES / "piqa.jsonl").read_text().splitlines()[0])
    context = f"Question: {doc['goal']}\nAnswer:"
    for (ctx, continuation), (logprob, _) in zip(sample["arguments"], sample["filtered_resps"]):
        assert ctx == context and continuation in (" " + doc["sol1"], " " + doc["sol2"])
        tokens = list((ctx + continuation).encode())
        expected = hand_loglikelihood(model, tokens, len(continuation.encode()))
        assert abs(logprob - expected) <= 1e-6 * abs(expected)  # float32 logits, float64 sums: ~1e-7 relative
    # acc: the right answer has the larger log-likelihood
    right = int(sample["filtered_resps"][doc["label"]][0] > sample["filtered_resps"][1 - doc["label"]][0])
    assert sample["acc"] == right


def test_loglikelihood_truncates_the_context_on_the_left_and_reports_greedy(tiny):
    model, tok = tiny
    lm = SuiteLM(model, tok, max_length=16, batch_size=2)
    context, continuation = list(range(40, 70)), [71, 72, 73]
    (logprob, greedy), = lm._loglikelihood_tokens([(None, context, continuation)])
    kept = (context + continuation)[-17:]  # 16 inputs + the last target
    assert logprob == pytest.approx(hand_loglikelihood(model, kept, 3), rel=1e-6)
    logits = model(torch.tensor([kept[:-1]]))[0, -3:]
    assert greedy == bool((logits.argmax(-1) == torch.tensor(continuation)).all())


def test_batches_with_right_padding_score_like_one_window_at_a_time():
    torch.manual_seed(1)
    model = build("gla", embedding_dim=32, num_blocks=1, vocab_size=64, gla_chunk_size=4).eval()  # chunked op
    windows = [Window(tuple(range(1, n + 1)), tuple(range(2, min(n, 5) + 2))) for n in (3, 11, 7, 16, 1)]
    one = score_windows(model, windows, batch_size=1)
    batched = score_windows(model, windows, batch_size=4)
    for a, b in zip(one, batched):
        assert b.logprob == pytest.approx(a.logprob, rel=1e-5) and a.greedy == b.greedy


def test_rolling_loglikelihood_uses_the_harness_windows(tiny):
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    model, tok = tiny
    tokens = list(range(60, 60 + 37))
    for max_len in (1, 8, 36, 37, 64):
        ours = rolling_windows(tokens, max_len, tok.eot_id)
        theirs = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, tok.eot_id, max_len, 1)]
        assert [(list(w.inputs[:len(w.inputs) - len(w.targets) + 1]), list(w.targets)) for w in ours] == \
               [(ctx, cont) for ctx, cont in theirs]  # the harness's (context, continuation) split of each window
    text = "The same words again and again, the same words. " * 3
    lm = SuiteLM(model, tok, max_length=512)
    req = type("Request", (), {"args": (text,)})()
    (logprob,) = lm.loglikelihood_rolling([req])
    ids = list(text.encode())  # shorter than the window: one pass with the end-of-text prefix
    assert logprob == pytest.approx(hand_loglikelihood(model, [tok.eot_id, *ids], len(ids)), rel=1e-6)


def test_greedy_generation_through_step_matches_recomputing_the_whole_prefix(tiny):
    model, tok = tiny
    lm = SuiteLM(model, tok, max_length=512)
    context = "Once upon a time"
    got = lm.greedy_continuation(context, [], 12)
    ids = list(context.encode())
    for _ in range(12):  # the parallel form on the whole sequence at every step
        token = int(model(torch.tensor([ids]))[0, -1].argmax())
        if token == tok.eot_id:
            break
        ids.append(token)
    assert got == tok.decode(ids[len(context.encode()):])
    stop = got[3:5] if len(got) >= 5 else None
    if stop:  # a stop string cuts the text before it
        assert lm.greedy_continuation(context, [stop], 12) == got.split(stop)[0]


def test_bf16_and_mixed_precision_stay_close_to_fp32(tiny):
    model, tok = tiny
    window = [Window(tuple(range(40, 80)), tuple(range(41, 81)))]
    ref = score_windows(model.float(), window)[0].logprob
    for precision in ("bf16-mixed", "bf16"):
        lm = SuiteLM(build("llama", embedding_dim=32, num_blocks=1, num_heads=2, vocab_size=320,
                           context_length=512).eval(), tok, 512, precision=precision)
        lm.model.load_state_dict({k: v.to(lm.model.embedding.weight.dtype) for k, v in model.state_dict().items()})
        got = lm._score(window)[0].logprob
        assert abs(got - ref) <= 0.02 * abs(ref)  # bf16 keeps 8 bits of mantissa: ~0.4 % per op, far below 2 %


def test_the_six_tasks_prompts_follow_the_upstream_definitions():
    tasks = downstream.build_tasks(list(downstream.TASKS), FIXTURES)
    hs = tasks["hellaswag"]
    doc = list(hs.test_docs())[3]  # its first ending has WikiHow's "[title]" markup to clean
    assert hs.doc_to_text(doc) == "Cleaning windows: A man sprays cleaner on a window. He"
    assert hs.doc_to_target(doc) == 3 and len(hs.doc_to_choice(doc)) == 4
    wg = tasks["winogrande"]
    doc = list(wg.test_docs())[1]
    assert wg.doc_to_choice(doc) == ["The trophy did not fit into the suitcase because the trophy",
                                     "The trophy did not fit into the suitcase because the suitcase"]
    assert wg.doc_to_text(doc) == 1 and wg.doc_to_target(doc) == "was too small."
    arc = tasks["arc_easy"]
    doc = list(arc.test_docs())[2]  # numeric labels "1".."3"
    assert arc.doc_to_target(doc) == 2 and arc.doc_to_text(doc) == "Question: Water turns into ice when it\nAnswer:"
    lam = tasks["lambada_openai"]
    doc = list(lam.test_docs())[0]
    assert lam.doc_to_text(doc) + lam.doc_to_target(doc) == doc["text"] and lam.doc_to_target(doc) == " box"


def test_missing_or_malformed_task_data_is_one_error_line(tmp_path):
    with pytest.raises(SuiteError, match="no data at .*piqa.jsonl.*experiments.eval.export"):
        downstream.build_tasks(["piqa"], tmp_path)
    (tmp_path / "piqa.jsonl").write_text('{"goal": "x", "sol1": "a"}\n')
    with pytest.raises(SuiteError, match=r"piqa.jsonl:1 lacks sol2, label"):
        downstream.build_tasks(["piqa"], tmp_path)
    (tmp_path / "piqa.jsonl").write_text("{not json\n")
    with pytest.raises(SuiteError, match=r"piqa.jsonl:1 is not JSON"):
        downstream.build_tasks(["piqa"], tmp_path)
    with pytest.raises(SuiteError, match="unknown downstream task boolq"):
        downstream.build_tasks(["boolq"], tmp_path)


def test_export_writes_the_upstream_rows_and_fails_in_one_line_offline(tmp_path):
    from datasets import Dataset

    from experiments.eval.export import export

    rows = [json.loads(line) for line in (FIXTURES / "arc_easy.jsonl").read_text().splitlines()]
    calls = []

    def load(path, config, split):
        calls.append((path, config, split))
        return Dataset.from_list(rows)

    assert export(["arc_easy"], tmp_path, load) == {"arc_easy": len(rows)}
    assert calls == [("allenai/ai2_arc", "ARC-Easy", "test")]
    assert [json.loads(line) for line in (tmp_path / "arc_easy.jsonl").read_text().splitlines()] == rows

    def offline(path, config, split):
        raise ConnectionError("offline mode is enabled\nmore")

    with pytest.raises(SuiteError, match=r"cannot load allenai/ai2_arc .*\(offline mode is enabled\); run this where"):
        export(["arc_challenge"], tmp_path, offline)
    assert not (tmp_path / "arc_challenge.jsonl").exists()


def test_cloze_passages_end_with_a_word_seen_earlier():
    text = ("Alice met Bob in Paris. Bob liked the city. They walked along the river for hours and talked about "
            "books and music and old friends. At night Alice wrote a long letter to Bob.\nHeading\n")
    passages = cloze_passages(text, sentences=4, min_words=10)
    assert passages == [text.split("\n")[0].rstrip(".")]  # "Bob" occurs before; the heading joins nothing
    assert cloze_passages(text.replace("to Bob", "to Carol"), sentences=4, min_words=10) == []
