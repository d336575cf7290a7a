"""Users, sessions and the scope of what each user may see."""
