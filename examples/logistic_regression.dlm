# Logistic regression: a linear score and a sigmoid for two classes, trained with binary
# cross-entropy on the logits.
#   node bin/dlc.js train examples/logistic_regression.dlm --data examples/data/logistic_train.csv \
#     --test examples/data/logistic_test.csv --val-split 0.2 --plot logistic.svg
# The classes overlap a little: label 1 when x0 + 0.5 x1 - 0.3 + noise > 0 (examples/data/make.ts).
model logistic_regression {
  input x: f32[B, 2]
  input y: f32[B, 1]

  logit = dense(x, 1, init: zeros)
  output prob = sigmoid(logit)
  positive = logit > 0.0

  loss = sigmoid_binary_cross_entropy(logit, y)
  metric accuracy = mean(positive == (y > 0.5))

  train {
    optimizer adam(lr: 0.05)
    early_stop patience: 5, on: val.accuracy
    batch 32
    epochs 30
    seed 2
  }
}
