"""lumenrec.agent"""
