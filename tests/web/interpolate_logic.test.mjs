// Unit tests of the growing KandinskyInterpolate logic: node --test tests/web/
import assert from "node:assert/strict";
import test from "node:test";

import {
  formatShare, MAX_PAIRS, MIN_PAIRS, planPairs, savedPairCount, shares, targetPairCount,
} from "../../web/interpolate_logic.js";

const used = (...flags) => flags.map(Boolean);

test("limits match the Python node (embeds_1..embeds_8, two required)", () => {
  assert.equal(MIN_PAIRS, 2);
  assert.equal(MAX_PAIRS, 8);
});

test("a fresh node shows the two required pairs and no spare", () => {
  assert.equal(targetPairCount([]), 2);
  assert.equal(targetPairCount(used(0, 0)), 2);
  assert.equal(targetPairCount(used(1, 0)), 2);
  assert.equal(targetPairCount(used(0, 1)), 3);
});

test("connecting the last pair adds one spare pair", () => {
  assert.equal(targetPairCount(used(1, 1)), 3);
  assert.equal(targetPairCount(used(1, 1, 1)), 4);
  assert.deepEqual(planPairs(2, used(1, 1)), { add: [3], remove: [] });
  assert.deepEqual(planPairs(3, used(1, 1, 1)), { add: [4], remove: [] });
});

test("a gap before the last used pair is kept (slots never move)", () => {
  assert.equal(targetPairCount(used(1, 0, 1)), 4);
  assert.deepEqual(planPairs(4, used(1, 0, 1, 0)), { add: [], remove: [] });
});

test("spare empty pairs disappear, from the end", () => {
  assert.deepEqual(planPairs(5, used(1, 1, 0, 0, 0)), { add: [], remove: [5, 4] });
  assert.deepEqual(planPairs(4, used(1, 0, 0, 0)), { add: [], remove: [4, 3] });
  assert.deepEqual(planPairs(3, used(0, 0, 0)), { add: [], remove: [3] });
});

test("a linked weight keeps its pair like a linked embeds", () => {
  // used[] covers both inputs of a pair, so a Primitive wired into weight_4 keeps pair 4
  assert.deepEqual(planPairs(5, used(1, 1, 0, 1, 0)), { add: [], remove: [] });
});

test("never more than MAX_PAIRS, never fewer than MIN_PAIRS", () => {
  const all = Array(MAX_PAIRS).fill(true);
  assert.equal(targetPairCount(all), MAX_PAIRS);
  assert.deepEqual(planPairs(MAX_PAIRS, all), { add: [], remove: [] });
  assert.deepEqual(planPairs(7, all.slice(0, 7)), { add: [8], remove: [] });
  assert.deepEqual(planPairs(1, used(0)), { add: [2], remove: [] });
});

test("growing one link at a time reaches eight pairs and shrinks back", () => {
  let shown = MIN_PAIRS;
  const links = [];
  for (let i = 0; i < MAX_PAIRS; i++) {
    links[i] = true;
    const flags = Array.from({ length: shown }, (_, j) => Boolean(links[j]));
    const { add, remove } = planPairs(shown, flags);
    assert.deepEqual(remove, []);
    shown += add.length;
  }
  assert.equal(shown, MAX_PAIRS);
  for (let i = MAX_PAIRS - 1; i >= 0; i--) {
    links[i] = false;
    const flags = Array.from({ length: shown }, (_, j) => Boolean(links[j]));
    const { add, remove } = planPairs(shown, flags);
    shown += add.length - remove.length;
  }
  assert.equal(shown, MIN_PAIRS);
});

test("savedPairCount reads serialised inputs and widget values", () => {
  assert.equal(savedPairCount({}), 2);
  assert.equal(savedPairCount({ inputs: [{ name: "embeds_1" }, { name: "embeds_2" }] }), 2);
  assert.equal(savedPairCount({ inputs: [{ name: "embeds_3" }], widgets_values: [0.5, 0.5, 0] }), 3);
  assert.equal(savedPairCount({ inputs: [], widgets_values: [0.2, 0.2, 0.2, 0.2, 0.2] }), 5);
  assert.equal(savedPairCount({ inputs: [{ name: "weight_6" }] }), 6);
  assert.equal(savedPairCount({ inputs: [{ name: "embeds_12" }] }), MAX_PAIRS);
  assert.equal(savedPairCount({ inputs: [{ name: "other" }, null] }), 2);
});

test("shares are weight / sum of the connected weights", () => {
  assert.deepEqual(shares([0.5, 0.5], [true, true]), [0.5, 0.5]);
  assert.deepEqual(shares([1, 3, 7], [true, true, false]), [0.25, 0.75, null]);
  assert.deepEqual(shares([2, -1], [true, true]), [2, -1]);
  assert.deepEqual(shares([0.3, 0.3, 0.4], [true, false, true]), [0.3 / 0.7, null, 0.4 / 0.7]);
});

test("shares are unknown when the connected weights sum to zero", () => {
  assert.deepEqual(shares([0, 0], [true, true]), [null, null]);
  assert.deepEqual(shares([1, -1, 5], [true, true, false]), [null, null, null]);
  assert.deepEqual(shares([], []), []);
});

test("formatShare prints a percentage with at most one decimal", () => {
  assert.equal(formatShare(0.5), "50%");
  assert.equal(formatShare(1 / 3), "33.3%");
  assert.equal(formatShare(-0.25), "-25%");
  assert.equal(formatShare(2), "200%");
  assert.equal(formatShare(0), "0%");
  assert.equal(formatShare(null), "");
  assert.equal(formatShare(Number.NaN), "");
});
