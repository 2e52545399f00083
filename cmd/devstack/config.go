package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/devstack/devstack/runner/project"
)

type configOptions struct {
	format   string
	services bool
	quiet    bool
}

func newConfigCmd(g *globalOptions) *cobra.Command {
	o := &configOptions{}
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Validate the project file and print it, fully resolved",
		Long: `config loads the project exactly as up would (files, profiles, .env,
interpolation, include, extends) and prints the result. A bad file is
reported with its file, line, service and key, and nothing is started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := g.load(cmd.Context(), nil)
			if err != nil {
				return err
			}
			g.warnKeys(p, func(s *project.Service) string { return plannedBackend(p, s, "") }, true)
			if o.quiet {
				return nil
			}
			if o.services {
				for _, s := range p.Services {
					fmt.Fprintln(g.stdout, s.Name)
				}
				return nil
			}
			if o.format != "yaml" && o.format != "json" {
				return fmt.Errorf("--format %q: use yaml or json", o.format)
			}
			b, err := p.Render(o.format)
			if err != nil {
				return err
			}
			_, err = g.stdout.Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&o.format, "format", "yaml", "output format: yaml or json")
	cmd.Flags().BoolVar(&o.services, "services", false, "print only the service names")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "only validate: print nothing but warnings and errors")
	return cmd
}
