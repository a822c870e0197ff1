"""The example's real settings, shared by the evaluator and device_check.py (tests pass smaller ones)."""

MQAR = {"vocab": 256, "seq_len": 64, "pairs": 8}
D_MODEL = 64
BATCH = 32
HELD_OUT = 500          # held-out sequences scored at the short and full stages
FULL_STEPS = 1000       # the full stage's fixed budget (task.yaml repeats it)
TRAIN_SEED = 1          # public: training batches may be seen by the candidate
