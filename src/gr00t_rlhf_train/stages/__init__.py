"""Training stages of the RLHF pipeline on one shared loop.

``loop`` (TrainConfig, train: accelerate, schedule, resume, logs; ``train_state`` its pickle-free
checkpoint state) is used by every stage:
``sft`` (stage 1, flow-matching fine-tuning of the policy), ``reward`` (stage 2, the reward model).
``cli`` registers ``gr00t-rlhf train sft|reward``. Nothing here imports ROS.
"""
