using System.Runtime.CompilerServices;

// The benchmarks pick each XBZRLE encoder implementation (XbzrleEncoderKind) explicitly.
[assembly: InternalsVisibleTo("DeltaMigrate.Benchmarks")]
