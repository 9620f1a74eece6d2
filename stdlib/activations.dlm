# Activations. Each is an ordinary fn: its gradient comes from the compiler.

fn identity(x) = x
fn relu(x) = max(x, 0.0)
fn sigmoid(x) = 1 / (1 + exp(-x))
fn tanh(x) = 2 / (1 + exp(-2 * x)) - 1

# Softmax over an axis, with the max subtracted so exp never overflows.
fn softmax(x, axis = -1) {
  e = exp(x - max(x, axis: axis, keepdims: true))
  return e / sum(e, axis: axis, keepdims: true)
}

fn logsumexp(x, axis = -1) {
  m = max(x, axis: axis, keepdims: true)
  return log(sum(exp(x - m), axis: axis)) + max(x, axis: axis)
}

fn log_softmax(x, axis = -1) {
  m = max(x, axis: axis, keepdims: true)
  return x - m - log(sum(exp(x - m), axis: axis, keepdims: true))
}
