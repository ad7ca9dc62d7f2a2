using System.Runtime.CompilerServices;

// The benchmarks pick each XBZRLE encoder implementation (XbzrleEncoderKind) explicitly
// and drive the tunnel the way TunnelSource does (TunnelWriteStream).
[assembly: InternalsVisibleTo("DeltaMigrate.Benchmarks")]
