namespace DeltaMigrate.Reports;
internal static class Probe { }
