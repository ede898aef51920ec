"""lumenrec.tools"""
