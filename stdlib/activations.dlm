# Activations. Each is an ordinary fn: its gradient comes from the compiler.

fn identity(x) = x
fn relu(x) = max(x, 0.0)
fn leaky_relu(x, alpha = 0.01) = x > 0 ? x : alpha * x
fn elu(x, alpha = 1.0) = x > 0 ? x : alpha * (exp(min(x, 0.0)) - 1)

# sigmoid(x) = 1 / (1 + e^-x), written so that no exp overflows: e = e^-|x|. -|x| is spelled per
# branch (-x where x >= 0), not abs(x), whose derivative at 0 is 0: that made sigmoid'(0) = 0.
fn sigmoid(x) {
  e = exp(x >= 0 ? -x : x)
  return x >= 0 ? 1 / (1 + e) : e / (1 + e)
}
fn tanh(x) = 2 * sigmoid(2 * x) - 1

# softplus(x) = log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), each branch spelled out (x >= 0:
# x + log(1 + e^-x); x < 0: log(1 + e^x)) so that softplus'(0) = 1/2 like sigmoid(0).
fn softplus(x) = (x >= 0 ? x : 0.0) + log(1 + exp(x >= 0 ? -x : x))
fn swish(x) = x * sigmoid(x)

# Softmax over an axis, with the max subtracted so exp never overflows. These three do not depend
# on the shift, so the gradient through the max is zero (its terms cancel): stop_gradient spares
# autodiff building them, as JAX's logsumexp does.
fn softmax(x, axis = -1) {
  e = exp(x - stop_gradient(max(x, axis: axis, keepdims: true)))
  return e / sum(e, axis: axis, keepdims: true)
}

fn logsumexp(x, axis = -1) {
  m = stop_gradient(max(x, axis: axis, keepdims: true))
  s = log(sum(exp(x - m), axis: axis))
  return s + reshape(m, shape(s))
}

fn log_softmax(x, axis = -1) {
  m = stop_gradient(max(x, axis: axis, keepdims: true))
  return x - m - log(sum(exp(x - m), axis: axis, keepdims: true))
}

# A leaky relu whose slope is learned, one per channel.
layer prelu(x: f32[..., c], alpha = 0.25) {
  param a: f32[c] = alpha @no_decay
  return x > 0 ? x : a * x
}
