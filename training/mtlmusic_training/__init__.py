"""mtlmusic_training: the reproduction of the study (targets, mel cache, design, Algorithm 1 training, analysis)."""
