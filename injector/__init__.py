"""injector"""
