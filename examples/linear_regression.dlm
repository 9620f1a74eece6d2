# Linear regression: fit y = x · w + b to noisy data by least squares (mean squared error).
#   node bin/dlc.js train examples/linear_regression.dlm --data examples/data/linear_train.csv \
#     --test examples/data/linear_test.csv --val-split 0.2 --plot linear.svg
# The data is y = 2 x0 - x1 + 0.5 x2 + 0.3 + noise (examples/data/make.ts writes it).
model linear_regression {
  input x: f32[B, 3]
  input y: f32[B, 1]

  pred = dense(x, 1, init: zeros)
  output yhat = pred

  loss = mse(pred, y)
  metric mae = mean(abs(pred - y))

  train {
    optimizer sgd(lr: 0.05)
    schedule reduce_on_plateau(factor: 0.5, patience: 2)
    early_stop patience: 4, on: val.loss
    batch 16
    epochs 40
    seed 1
  }
}
