"""mlplatform"""
