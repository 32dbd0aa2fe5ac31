{
	"subject": {{ toJson .Subject }},
	"keyUsage": ["certSign", "crlSign"],
	{{- with .URL.CRL }}
	"crlDistributionPoints": {{ toJson . }},
	{{- end }}
	"basicConstraints": {"isCA": true, "maxPathLen": 0}
}
