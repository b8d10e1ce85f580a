"""gr00t_rlhf_train: the offline half of gr00t_rlhf. Never imports ROS.

data/   LeRobot v2.0 (GR00T flavour) dataset reader/writer, video, stats, time alignment
model/  GR00T N1 policy and reward model (configuration, modeling, processor, checkpoints)
"""
