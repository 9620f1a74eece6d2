# Losses, averaged over the batch, in their numerically stable forms.

# Integer labels [B] or one-hot rows [B, C]: mean of logsumexp(logits) - logit of the true class.
fn softmax_cross_entropy(logits, labels) = mean(logsumexp(logits, axis: -1) - pick(logits, labels))

# Binary cross-entropy on logits: softplus(z) - z * y = max(z, 0) - z * y + log(1 + e^-|z|),
# never log(0), with the gradient sigmoid(z) - y everywhere (z = 0 included).
fn sigmoid_binary_cross_entropy(logits, targets) = mean(softplus(logits) - logits * targets)

fn mse(pred, target) = mean((pred - target) ^ 2)
fn mae(pred, target) = mean(abs(pred - target))

# Quadratic within delta of the target, linear beyond it.
fn huber(pred, target, delta = 1.0) {
  r = abs(pred - target)
  return mean(r <= delta ? 0.5 * r ^ 2 : delta * (r - 0.5 * delta))
}

# Multi-class hinge (Weston-Watkins): sum over wrong classes of max(0, s_j - s_y + margin).
fn hinge(scores, labels, margin = 1.0) {
  true_score = pick(scores, labels)
  m = max(scores - expand_dims(true_score, -1) + margin, 0.0)
  return mean(sum(m, axis: -1) - margin)
}
