"""Teacher signals for training and fitting: MediaPipe Face Landmarker (extra ``teacher``) and the
MediaPipe <-> ICT surface correspondence. Never on the tracking path."""
