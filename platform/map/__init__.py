"""The facility map (养老地图): public homes, grades and free beds, nearest homes, exports and the map page."""
