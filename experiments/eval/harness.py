"""The lm-evaluation-harness model class for every language model of the suite (``pip install -e '.[eval]'``).

``SuiteLM(model, tokenizer, ...)`` answers the harness's three request types with the model's own forms:

* ``loglikelihood``: (context, continuation) pairs as ``perplexity.Window``s (the last ``max_length`` tokens of
  context + continuation go in, the continuation's tokens are scored), batched through the parallel form.
* ``loglikelihood_rolling``: a whole document in the disjoint rolling windows of ``perplexity.document_nlls``
  (each token predicted once, the end-of-text token as the prefix), the same windows as PALOMA's.
* ``generate_until``: greedy decoding through ``step()`` (the recurrent state, or the Transformers' KV cache): the
  prompt in one call, then one token per call until a stop string, the end-of-text token or ``max_gen_toks``.

``precision`` is ``fp32`` (weights and compute in float32), ``bf16`` (weights cast to bfloat16) or ``bf16-mixed``
(float32 weights, bfloat16 autocast); the paper took the best of the three per model.
"""
from __future__ import annotations

import torch

from ..config import SuiteError
from .perplexity import Window, autocast, document_nlls, place, score_windows

try:
    from lm_eval.api.model import TemplateLM
except ImportError:  # the eval extra is not installed: the class below cannot exist, say how to get it
    TemplateLM = None


def require_lm_eval() -> None:
    if TemplateLM is None:
        raise SuiteError("downstream evaluation needs lm-evaluation-harness: pip install -e '.[eval]'")


class _Base(TemplateLM if TemplateLM is not None else object):  # type: ignore[misc]
    pass


class SuiteLM(_Base):
    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int, batch_size: int = 8,
                 precision: str = "fp32", device: str = "cpu", max_gen_toks: int = 256):
        require_lm_eval()
        super().__init__()
        self.tokenizer = tokenizer
        self.max_length, self.batch_size, self.max_gen_toks = max_length, batch_size, max_gen_toks
        self.precision, self._device = precision, torch.device(device)
        self.model = place(model, precision, device)

    # ---- tokens ---------------------------------------------------------------------------------------------------
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eot_id

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tokenizer.encode_batch([string])[0]

    def tok_decode(self, tokens: list[int], **kwargs) -> str:
        return self.tokenizer.decode(list(tokens))

    def _score(self, windows: list[Window]):
        with autocast(self.precision, self._device):
            return score_windows(self.model, windows, self.batch_size)

    # ---- the harness's requests -----------------------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs) -> list[tuple[float, bool]]:
        """``requests``: ((context, continuation), context tokens, continuation tokens) -> (log p, is greedy)."""
        windows = []
        for _, context, continuation in requests:
            whole = [*context, *continuation]
            inputs = whole[:-1][-self.max_length:]  # left-truncated to the model's window
            windows.append(Window(tuple(inputs), tuple(continuation[-len(inputs):])))
        out = [(s.logprob, s.greedy) for s in self._score(windows)]
        for (key, _, _), answer in zip(requests, out):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, answer)
        return out

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Each document's log-likelihood (nats), all windows of all documents batched together."""
        with autocast(self.precision, self._device):
            nlls = document_nlls(self.model, [self.tok_encode(req.args[0]) for req in requests], self.max_length,
                                 self.prefix_token_id, self.batch_size)
        out = [-nll for nll, _ in nlls]
        for req, answer in zip(requests, out):
            self.cache_hook.add_partial("loglikelihood_rolling", (req.args[0],), answer)
        return out

    @torch.no_grad()
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for req in requests:
            context, options = req.args
            out.append(self.greedy_continuation(context, options.get("until") or [],
                                                int(options.get("max_gen_toks", self.max_gen_toks))))
            self.cache_hook.add_partial("generate_until", (context, options), out[-1])
        return out

    def greedy_continuation(self, context: str, until: list[str] | str, max_new_tokens: int) -> str:
        """The greedy continuation of ``context``, cut before the first stop string."""
        until = [until] if isinstance(until, str) else list(until)
        prompt = (self.tok_encode(context) or [self.prefix_token_id])[-max(1, self.max_length - max_new_tokens):]
        tokens: list[int] = []
        with autocast(self.precision, self._device):
            logits, state = self.model.step(torch.tensor([prompt], device=self._device), None)
            for _ in range(max_new_tokens):
                token = int(logits[0, -1].float().argmax())
                if token == self.eot_token_id:
                    break
                tokens.append(token)
                text = self.tok_decode(tokens)
                if any(stop in text for stop in until):
                    break
                logits, state = self.model.step(torch.tensor([[token]], device=self._device), state)
        text = self.tok_decode(tokens)
        for stop in until:
            text = text.split(stop)[0]
        return text
