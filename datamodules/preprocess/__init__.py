"""Preprocessing raw videos into clips: layouts, face crop, landmarks, mel, resumable parallel runs."""
