"""The numpy decoding primitives: filtering, drawing, penalties, loop detection."""

import numpy as np

from lstmgen.decoding import filter_logits, is_looping, penalise_repeats, pick


def draw(probs, rng):
    """One token per row, as decoding.choose draws it: a float32 uniform per row."""
    return pick(probs, rng.random((probs.shape[0], 1), dtype=np.float32))


def test_top_k_and_top_p_filtering():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    assert np.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    assert np.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert np.isinf(filter_logits(logits, top_p=0.1)).tolist() == [[False, True, True, True]]
    # a top_p that is 0 in float32 still keeps the most likely token (found by test_sample's property test)
    assert np.isinf(filter_logits(logits, top_p=5e-324)).tolist() == [[False, True, True, True]]
    assert not np.isinf(filter_logits(logits, top_p=1.0)).any()
    np.testing.assert_allclose(filter_logits(logits, temperature=2.0), (logits - logits.max()) / 2, rtol=1e-6)


def test_loop_detection_finds_a_repeated_tail_only():
    back_to = [5, 6] * 8  # "back to back to ..." as word ids: period 2 over 16 tokens
    assert is_looping([1, 2, 3, *back_to])
    assert is_looping(list(range(30)) + list(range(10)) * 3)  # a 10-token block, three times
    assert not is_looping([5, 6] * 7)  # too short to call a loop
    assert not is_looping(list(range(40)))
    assert not is_looping([1, 2] * 8 + [3])  # it stopped repeating


def test_repetition_penalty_lowers_seen_tokens_whatever_their_sign():
    logits = np.array([[2.0, -2.0, 2.0, -2.0]])
    seen = np.array([[True, True, False, False]])
    assert penalise_repeats(logits, seen, 2.0).tolist() == [[1.0, -4.0, 2.0, -2.0]]


def test_draw_follows_the_probabilities_and_never_picks_an_excluded_token():
    probs = np.array([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])  # zeros: what top-k/top-p/banned leave at -inf
    picks = draw(np.broadcast_to(probs, (60_000, 6)), np.random.default_rng(0))
    freq = np.bincount(picks, minlength=6) / picks.size
    assert (freq[probs == 0] == 0).all()
    np.testing.assert_allclose(freq, probs, atol=0.01)
    again = draw(np.broadcast_to(probs, (60_000, 6)), np.random.default_rng(0))
    assert (picks == again).all()  # a seed gives the same draws
    assert draw(np.array([[0.0, 0.0, 1.0]]), np.random.default_rng(1)).tolist() == [2]  # the only possible token


def test_extreme_temperatures_give_greedy_or_uniform_never_nan():
    logits = np.array([[3.0, 1.0, -np.inf, 2.0]], dtype=np.float32)
    tiny = filter_logits(logits, temperature=5e-324)  # a subnormal
    assert tiny.tolist() == [[0.0, -np.inf, -np.inf, -np.inf]]
    huge = filter_logits(logits, temperature=1e308)
    assert np.isfinite(huge[0, [0, 1, 3]]).all() and np.isneginf(huge[0, 2])
    for scaled in (tiny, huge):
        assert draw(np.exp(scaled), np.random.default_rng(0)).tolist()[0] in (0, 1, 3)

    # per row: a subnormal temperature in one row leaves the other row's sampling as it was
    rows = filter_logits(np.repeat(logits, 2, axis=0), temperature=[5e-324, 1.0])
    assert rows[0].tolist() == tiny[0].tolist()
    np.testing.assert_allclose(rows[1], filter_logits(logits)[0])


def test_each_row_is_filtered_as_it_would_be_alone():
    """Streams with different settings share one call (the server's batches): a row's result must be the
    one it gets alone, bit for bit, or a seed would give other text when other requests are running."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 40)).astype(np.float32) * 4
    logits[1, 3] = -np.inf  # a banned token
    temperature, top_k, top_p = [0.8, 0.8, 1.7, 1e-35, 0.8], [None, 5, None, None, 5], [None, None, 0.9, None, 0.5]
    together = filter_logits(logits, temperature, top_k, top_p)
    for i in range(5):
        alone = filter_logits(logits[i : i + 1], temperature[i], top_k[i], top_p[i])
        assert together[i].tobytes() == alone[0].tobytes(), i
    shared = filter_logits(logits, [0.8] * 5)  # one temperature for all, given per row or once: the same
    assert shared.tobytes() == filter_logits(logits, 0.8).tobytes()


def test_loop_detection_agrees_with_its_definition_on_random_tails():
    """is_looping only examines the periods where the newest token repeats; the definition checks them all."""

    def by_definition(ids, min_span=16, max_period=40):
        n = len(ids)
        for period in range(1, max_period + 1):
            span = max(3 * period, min_span)
            if span <= n and all(ids[n - k] == ids[n - k - period] for k in range(1, span - period + 1)):
                return True
        return False

    rng = np.random.default_rng(0)
    looping = 0
    for _ in range(3000):
        ids = rng.integers(0, int(rng.choice([2, 3, 61])), int(rng.integers(0, 130))).tolist()
        if ids and rng.random() < 0.5:  # end in a block repeated a few times, sometimes broken at the end
            block = rng.integers(0, 5, int(rng.integers(1, 45))).tolist()
            ids += block * int(rng.integers(1, 6)) + ([7] if rng.random() < 0.3 else [])
        assert is_looping(ids) == by_definition(ids), ids
        assert is_looping(ids, 4, 10) == by_definition(ids, 4, 10), ids
        looping += by_definition(ids)
    assert 300 < looping < 2700  # both answers were exercised
