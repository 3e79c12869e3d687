// Pure logic of the growing KandinskyInterpolate node: no DOM, no ComfyUI imports, so `node --test` can
// run it (tests/web/interpolate_logic.test.mjs). kandinsky_interpolate.js applies it to the graph node.

export const MIN_PAIRS = 2; // embeds_1/weight_1 and embeds_2/weight_2 are required inputs
export const MAX_PAIRS = 8; // embeds_8/weight_8 is the last input the Python node accepts

/**
 * How many embeds/weight pairs the node should show: every pair up to the last one in use, plus one
 * empty spare pair to connect the next input to, at least MIN_PAIRS and at most MAX_PAIRS.
 * @param {boolean[]} used used[i] is true when pair i + 1 has a link (its embeds or its weight input).
 * @returns {number}
 */
export function targetPairCount(used) {
  const last = used.lastIndexOf(true) + 1; // 1-based number of the last pair in use, 0 if none
  const wanted = last >= MIN_PAIRS ? last + 1 : MIN_PAIRS;
  return Math.min(MAX_PAIRS, Math.max(MIN_PAIRS, wanted));
}

/**
 * The pairs to add and remove to go from `shown` pairs to the target count.
 * Pairs are numbered from 1; additions and removals always happen at the end, so the slots of the
 * pairs that stay never move.
 * @param {number} shown number of pairs the node has now
 * @param {boolean[]} used see targetPairCount (entries past `shown` are ignored)
 * @returns {{add: number[], remove: number[]}} pair numbers to add (ascending) and remove (descending)
 */
export function planPairs(shown, used) {
  const target = targetPairCount(used.slice(0, shown));
  const add = [];
  const remove = [];
  for (let i = shown + 1; i <= target; i++) add.push(i);
  for (let i = shown; i > target; i--) remove.push(i);
  return { add, remove };
}

/**
 * The number of pairs a saved node had, from its serialised inputs (names embeds_1 .. embeds_N) and
 * widget values (one weight per pair), clamped to [MIN_PAIRS, MAX_PAIRS].
 * @param {{inputs?: {name: string}[], widgets_values?: unknown[]}} data a serialised node
 * @returns {number}
 */
export function savedPairCount(data) {
  let count = MIN_PAIRS;
  for (const input of data?.inputs ?? []) {
    const match = /^(?:embeds|weight)_(\d+)$/.exec(input?.name ?? "");
    if (match) count = Math.max(count, Number(match[1]));
  }
  if (Array.isArray(data?.widgets_values)) count = Math.max(count, data.widgets_values.length);
  return Math.min(MAX_PAIRS, count);
}

/**
 * Each connected input's normalised share weight_i / sum(weights of connected inputs): how much of the
 * mix it makes up (the negative embeddings are mixed with exactly these shares). null for inputs that
 * are not connected, and for all of them when the weights sum to zero (the node would raise an error).
 * @param {number[]} weights weight of each shown pair
 * @param {boolean[]} connected whether each pair's embeds input is connected
 * @returns {(number|null)[]}
 */
export function shares(weights, connected) {
  let total = 0;
  weights.forEach((w, i) => {
    if (connected[i]) total += Number(w);
  });
  const valid = Number.isFinite(total) && total !== 0;
  return weights.map((w, i) => (connected[i] && valid ? Number(w) / total : null));
}

/**
 * A share as the node shows it: a percentage with at most one decimal ("40%", "33.3%", "-25%").
 * @param {number|null} share
 * @returns {string}
 */
export function formatShare(share) {
  if (share === null || !Number.isFinite(share)) return "";
  const percent = Math.round(share * 1000) / 10;
  return `${Number.isInteger(percent) ? percent.toFixed(0) : percent.toFixed(1)}%`;
}
