import pytest
import torch

from lstmgen.config import ModelConfig
from lstmgen.model import LSTMLM
from lstmgen.tokenize import IGNORE

N, T, E, H, V = 2, 7, 4, 5, 6


def toy(n_layer=2, dropout=0.0, tie=False, adaptive=None):
    torch.manual_seed(0)
    hidden = 16 if adaptive else H  # the second band's projection is hidden // 16 wide
    cfg = ModelConfig(
        embed=hidden if tie else E,
        hidden=hidden,
        n_layer=n_layer,
        dropout=dropout,
        tie_weights=tie,
        adaptive_softmax=adaptive,
    )
    return LSTMLM(V, cfg)


def test_shapes_and_state_layout():
    m = toy(n_layer=3)
    logits, (h, c) = m(torch.randint(0, V, (N, T)))
    assert logits.shape == (N, T, V)
    assert h.shape == c.shape == (3, N, H)  # (n_layer, B, H): the tutorial passed (B, ...) here


def test_tied_weights_share_one_matrix():
    m = toy(tie=True)
    assert m.head.weight is m.embed.weight


@pytest.mark.parametrize("adaptive", [None, [2, 4]])
def test_stateful_step_by_step_equals_full_rerun_in_eval_mode(adaptive):
    """The well-known question: one token at a time with the carried (h, c) == the whole text from zeros."""
    m = toy(dropout=0.5, adaptive=adaptive).eval()
    idx = torch.randint(0, V, (N, T))
    with torch.no_grad():
        full, _ = m(idx)
        state, steps = None, []
        for t in range(T):
            logits, state = m(idx[:, t : t + 1], state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("adaptive", [None, [2, 4]])
def test_the_nll_forward_scores_each_target_as_its_softmax_does(adaptive):
    """Training and eval take forward's NLL path, sampling its scores: they must describe one distribution."""
    m = toy(adaptive=adaptive).eval()
    idx, targets = torch.randint(0, V, (N, T)), torch.randint(0, V, (N, T))
    targets[0, -2:] = IGNORE  # eval pads short lanes with IGNORE targets
    with torch.no_grad():
        scores, _ = m(idx)  # (N, T, V)
        nll, _ = m(idx, targets=targets)  # (N, T)
    logp = scores.log_softmax(-1)
    kept = targets != IGNORE
    expected = -logp.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(nll[kept], expected[kept])
    assert (nll[~kept] == 0).all()
    if adaptive:  # centred like a linear head's logits (the repetition penalty depends on the sign)
        torch.testing.assert_close(scores.mean(-1), torch.zeros(N, T), atol=1e-5, rtol=0)


def test_the_adaptive_head_scores_in_fp32_under_bf16_autocast():
    """CUDA's autocast made the head's log_softmax fp32 into a bf16 buffer (pytorch#44724): it runs in fp32."""
    m = toy(adaptive=[2, 4]).eval()
    out, targets = torch.randn(N, T, 16), torch.randint(0, V, (N, T))
    with torch.no_grad():
        exact = m._nll(out, targets)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            nll, scores = m._nll(out.bfloat16(), targets), m._scores(out.bfloat16())
    assert nll.dtype == scores.dtype == torch.float32
    torch.testing.assert_close(nll, exact, atol=0.05, rtol=0.02)  # only the input was rounded to bf16


def test_adaptive_cutoffs_past_the_vocabulary_are_dropped():
    assert isinstance(toy(adaptive=[2, 40]).head, torch.nn.AdaptiveLogSoftmaxWithLoss)
    assert toy(adaptive=[2, 40]).head.cutoffs == [2, V]  # torch appends the vocabulary size
    assert isinstance(toy(adaptive=[40]).head, torch.nn.Linear)  # none left: the full softmax


def test_fast_dropout_drops_p_and_keeps_the_expected_value():
    from lstmgen.model import FastDropout

    drop, x = FastDropout(0.3), torch.ones(200_000, requires_grad=True)
    y = drop(x)
    assert abs((y == 0).float().mean().item() - 0.3) < 0.01  # about p of the units dropped
    assert y.unique().tolist() == [0.0, pytest.approx(1 / 0.7)]  # the rest scaled by 1 / (1 - p)
    assert abs(y.mean().item() - 1.0) < 0.02
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # the gradient goes through the kept units, scaled alike
    assert torch.equal(drop.eval()(x), x)


def test_train_mode_dropout_is_what_makes_them_differ():
    m = toy(dropout=0.5).train()
    idx = torch.randint(0, V, (N, T))
    assert not torch.allclose(m(idx)[0], m(idx)[0])




