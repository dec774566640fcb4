"""Reading recorded demonstrations into arrays for training and evaluation."""
