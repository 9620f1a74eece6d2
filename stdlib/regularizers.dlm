# Penalties added to the loss, and projections applied after each update.

regularizer l2(lambda) { penalty(w) = lambda * sum(w ^ 2) }
regularizer l1(lambda) { penalty(w) = lambda * sum(abs(w)) }
regularizer elastic_net(l1 = 0.0, l2 = 0.0) { penalty(w) = l1 * sum(abs(w)) + l2 * sum(w ^ 2) }

fn norm(x, axis = 0) = sqrt(sum(x ^ 2, axis: axis, keepdims: true))
constraint max_norm(c) { project(w) = w * min(1, c / (norm(w, axis: 0) + 1e-7)) }
constraint non_neg() { project(w) = max(w, 0.0) }
