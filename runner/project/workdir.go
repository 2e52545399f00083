package project

import "path/filepath"

// Workdir is the absolute directory s runs in as a process: its
// x-devstack.workdir, else the project's, relative to the project
// directory; else the project directory.
func (p *Project) Workdir(s *Service) string {
	wd := s.X.Workdir
	if wd == "" {
		wd = p.X.Workdir
	}
	if wd == "" {
		return p.Dir
	}
	if filepath.IsAbs(wd) {
		return wd
	}
	return filepath.Join(p.Dir, wd)
}
