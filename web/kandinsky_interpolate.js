// ComfyUI frontend extension: KandinskyInterpolate grows. The node is created with all eight
// embeds/weight pairs of its Python definition; this keeps the pairs in use plus one empty spare, and
// labels each connected weight with its normalised share of the mix. The decisions are the pure
// functions of interpolate_logic.js; this file only applies them to the LiteGraph node.
import { app } from "../../scripts/app.js";
import { formatShare, MAX_PAIRS, MIN_PAIRS, planPairs, savedPairCount, shares } from "./interpolate_logic.js";

const NODE_TYPE = "KandinskyInterpolate";
const INPUT = 1; // LiteGraph's NodeSlotType.INPUT

const inputIndex = (node, name) => (node.inputs ?? []).findIndex((input) => input.name === name);
const weightWidget = (node, i) => (node.widgets ?? []).find((w) => w.name === `weight_${i}`);

function shownPairs(node) {
  let n = 0;
  while (n < MAX_PAIRS && inputIndex(node, `embeds_${n + 1}`) !== -1) n++;
  return n;
}

function isLinked(node, name) {
  const index = inputIndex(node, name);
  return index !== -1 && node.inputs[index].link != null;
}

function pairUsed(node, i) {
  return isLinked(node, `embeds_${i}`) || isLinked(node, `weight_${i}`);
}

// A removed slot's settings, so that re-adding it gives the slot the frontend built from the node
// definition (its `widget` link to the weight widget included).
function slotExtra(input) {
  const extra = {};
  for (const key of ["shape", "label", "localized_name", "widget"]) {
    if (input[key] !== undefined) extra[key] = input[key];
  }
  return { type: input.type, extra };
}

function removePair(node, i) {
  const stash = (node.kandinskyStash ??= new Map());
  const saved = {};
  for (const name of [`weight_${i}`, `embeds_${i}`]) {
    const index = inputIndex(node, name);
    if (index === -1) continue;
    saved[name] = slotExtra(node.inputs[index]);
    node.removeInput(index);
  }
  const widget = weightWidget(node, i);
  if (widget) {
    saved.widget = widget; // kept whole for re-adding; its value too (the frontend's value store may drop it)
    saved.value = widget.value;
    if (node.removeWidget) node.removeWidget(widget);
    else node.widgets.splice(node.widgets.indexOf(widget), 1);
  }
  stash.set(i, saved);
}

function addPair(node, i) {
  const saved = node.kandinskyStash?.get(i);
  if (!saved) return false; // the node definition has no such pair
  node.kandinskyStash.delete(i);
  for (const name of [`embeds_${i}`, `weight_${i}`]) {
    if (saved[name] && inputIndex(node, name) === -1) node.addInput(name, saved[name].type, saved[name].extra);
  }
  if (saved.widget && !weightWidget(node, i)) {
    // addCustomWidget binds the widget to the node's entry in the frontend's widget value store, which the
    // Nodes 2.0 (Vue) renderer draws from; a plain push would leave the screen showing a stale value.
    const widget = node.addCustomWidget ? node.addCustomWidget(saved.widget) : (node.widgets.push(saved.widget), saved.widget);
    if (widget.value !== saved.value) widget.value = saved.value;
  }
  return true;
}

function fitSize(node) {
  const [width, height] = node.computeSize();
  node.setSize([Math.max(node.size[0], width), height]); // keep a width the user chose, fit the height
  node.setDirtyCanvas?.(true, true);
}

/** Adds or removes pairs at the end until the node shows the pairs in use plus one spare. */
function syncPairs(node) {
  const shown = shownPairs(node);
  const used = Array.from({ length: shown }, (_, k) => pairUsed(node, k + 1));
  const { add, remove } = planPairs(shown, used);
  for (const i of remove) removePair(node, i);
  for (const i of add) if (!addPair(node, i)) break;
  if (add.length || remove.length) fitSize(node);
  labelShares(node);
}

/** Shows each connected weight's share of the mix in its label, e.g. "weight_2 (25%)". */
function labelShares(node) {
  const n = shownPairs(node);
  const widgets = Array.from({ length: n }, (_, k) => weightWidget(node, k + 1));
  const weights = widgets.map((w) => Number(w?.value ?? 0));
  const connected = Array.from({ length: n }, (_, k) => isLinked(node, `embeds_${k + 1}`));
  shares(weights, connected).forEach((share, k) => {
    const widget = widgets[k];
    if (!widget) return;
    widget.kandinskyLabel ??= widget.label ?? widget.name;
    const text = formatShare(share);
    widget.label = text ? `${widget.kandinskyLabel} (${text})` : widget.kandinskyLabel;
  });
}

app.registerExtension({
  name: "Kandinsky.InterpolateInputs",

  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== NODE_TYPE) return;
    const proto = nodeType.prototype;

    const onNodeCreated = proto.onNodeCreated;
    proto.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      for (const widget of this.widgets ?? []) {
        if (!widget.name?.startsWith("weight_")) continue;
        const callback = widget.callback;
        widget.callback = (...args) => {
          const out = callback?.apply(widget, args);
          labelShares(this); // the Nodes 2.0 (Vue) renderer never calls onDrawForeground
          return out;
        };
      }
      for (let i = shownPairs(this); i > MIN_PAIRS && !pairUsed(this, i); i--) removePair(this, i);
      syncPairs(this);
      fitSize(this);
      return result;
    };

    // A saved node gets its pairs back before LiteGraph assigns inputs and widget values by position.
    const configure = proto.configure;
    proto.configure = function (data) {
      this.kandinskyLoading = true;
      try {
        const wanted = savedPairCount(data);
        for (let i = shownPairs(this) + 1; i <= wanted; i++) if (!addPair(this, i)) break;
        return configure.apply(this, arguments);
      } finally {
        this.kandinskyLoading = false;
      }
    };

    const onConfigure = proto.onConfigure;
    proto.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      syncPairs(this);
      return result;
    };

    // Re-plan after the link change is complete (LiteGraph is still updating slots in this callback).
    const onConnectionsChange = proto.onConnectionsChange;
    proto.onConnectionsChange = function (type) {
      const result = onConnectionsChange?.apply(this, arguments);
      if (type === INPUT && !this.kandinskyLoading && !this.kandinskySyncQueued) {
        this.kandinskySyncQueued = true;
        queueMicrotask(() => {
          this.kandinskySyncQueued = false;
          syncPairs(this);
        });
      }
      return result;
    };

    const onDrawForeground = proto.onDrawForeground;
    proto.onDrawForeground = function () {
      labelShares(this); // the classic canvas: every frame, so typed values relabel at once
      return onDrawForeground?.apply(this, arguments);
    };
  },
});
