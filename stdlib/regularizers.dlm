# Penalties added to the loss, and projections applied after each update.

regularizer l2(lambda) { penalty(w) = lambda * sum(w ^ 2) }
regularizer l1(lambda) { penalty(w) = lambda * sum(abs(w)) }
regularizer elastic_net(l1 = 0.0, l2 = 0.0) { penalty(w) = l1 * sum(abs(w)) + l2 * sum(w ^ 2) }

fn norm(x, axis = 0) = sqrt(sum(x ^ 2, axis: axis, keepdims: true))
constraint max_norm(c) { project(w) = w * min(1, c / (norm(w, axis: 0) + 1e-7)) }
constraint non_neg() { project(w) = max(w, 0.0) }

# DropConnect (Wan et al. 2013): in training, each weight is dropped with probability `rate` and
# the kept ones scaled by 1 / (1 - rate); in inference the weights are used as they are.
fn dropconnect(w, rate: float) = dropout(w, rate)
layer dense_dropconnect(x: f32[..., n], units: int, rate = 0.5, init = he_normal) {
  param w: f32[n, units] = init
  param b: f32[units] = zeros @no_decay
  return x @ dropconnect(w, rate) + b
}
